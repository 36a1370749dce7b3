# The devjobs controller: `docker build -t devjobs-controller .` then `kubectl apply -k deploy/`.
#
# BASE is any Debian-like image with python3 (>= 3.11, with venv) and git: the resolver
# fetches sources with git. Nothing is pulled in CI here: tests/controller_image builds
# BASE from a debootstrap'ed Debian 12 rootfs and passes PIP_OPTS to install from a local
# wheelhouse (`--no-index --find-links /src/wheelhouse`).
ARG BASE=debian:bookworm-slim
FROM ${BASE} AS build
ARG PIP_OPTS=""
COPY . /src
RUN python3 -m venv /opt/devjobs \
 && /opt/devjobs/bin/pip install --no-cache-dir --disable-pip-version-check ${PIP_OPTS} /src \
 && /opt/devjobs/bin/pip uninstall -y --disable-pip-version-check pip setuptools \
 && find /opt/devjobs -name __pycache__ -prune -exec rm -rf {} +

FROM ${BASE}
COPY --from=build /opt/devjobs /opt/devjobs
ENV PATH=/opt/devjobs/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/cache
USER 65532:65532
ENTRYPOINT ["devjobs", "controller"]
