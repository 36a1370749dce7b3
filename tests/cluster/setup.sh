#!/usr/bin/env bash
# Make this machine able to run both test tiers: Debian packages for tier 2 (root only),
# then the Kubernetes + etcd binaries (built once into the versioned cache, else reused).
# Idempotent; takes about a second when everything is already there.
#
#   bash tests/cluster/setup.sh
#
# DEVJOBS_TIER2=0         skip the tier-2 packages
# DEVJOBS_K8S_BIN / KUBEBUILDER_ASSETS
#                         binaries you already have: nothing is built for those present there
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# containerd + runc + CNI plugins + busybox-static (the test image's rootfs); iproute2 and
# util-linux (ip, nsenter, unshare) and openssl (certificates) are usually there already;
# kubelet sets up its iptables chains in the node's network namespace.
TIER2_PACKAGES=(containerd runc containernetworking-plugins busybox-static iptables iproute2 util-linux openssl)

if [[ "${DEVJOBS_TIER2:-1}" != "0" ]]; then
    missing=()
    for p in "${TIER2_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        if [[ $(id -u) -ne 0 ]]; then
            echo "setup.sh: tier 2 needs: ${missing[*]} (run as root, or set DEVJOBS_TIER2=0)" >&2
            exit 1
        fi
        echo "setup.sh: apt-get install ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# Binaries present in DEVJOBS_K8S_BIN/KUBEBUILDER_ASSETS are not built (binaries.py prefers them).
need_build=0
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
    found=0
    for d in "${DEVJOBS_K8S_BIN:-}" "${KUBEBUILDER_ASSETS:-}"; do
        [[ -n "$d" && -x "$d/$b" ]] && found=1
    done
    ((found)) || need_build=1
done
if ((need_build)); then
    bin=$(bash "$here/build.sh")
    echo "setup.sh: binaries in $bin" >&2
fi

# The real Catalyst operator (tests/test_catalyst_operator.py), cached by its source's
# content. No source is not an error here: the tests that need it fail and say what to set.
if [[ "${DEVJOBS_TIER2:-1}" != "0" ]]; then
    rc=0
    manager=$(bash "$here/catalyst_build.sh") || rc=$?
    if ((rc == 0)); then
        echo "setup.sh: Catalyst operator $manager" >&2
    elif ((rc == 3)); then
        echo "setup.sh: no Catalyst operator source (the operator tests will fail until DEVJOBS_CATALYST_SRC names a Catalyst checkout's operator/ folder)" >&2
    else
        exit "$rc"
    fi
fi
