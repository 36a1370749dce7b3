#!/usr/bin/env bash
# Packages the Docker engine tests need (tests/docker/engine.py starts them itself):
# Debian's dockerd (docker.io, which brings containerd and runc) and busybox-static for
# the test image. Idempotent; starts nothing (apt's service start is not wanted here).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for package in docker.io busybox-static; do
  dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ "${#need[@]}" -gt 0 ]; then
  # Never start the machine's own docker/containerd services while installing.
  policy=/usr/sbin/policy-rc.d
  created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created=1
  fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [ "$created" = 1 ]; then rm -f "$policy"; fi
fi
echo "tests/docker/setup.sh: dockerd $(dockerd --version | cut -d' ' -f3 | tr -d ,), busybox-static ready"
