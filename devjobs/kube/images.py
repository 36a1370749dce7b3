"""Which image a job runs in: its own, an explicit `--image`, or the Environment's build.

A job with `image: null` runs in the image Catalyst built for the environment, named as
the Catalyst operator names it: `<registry>/<project>/<build>-<env>:<commit>`, where the
tag is the source's commit, else its branch, else `latest` (the operator's fallback).
"""

from __future__ import annotations

from collections.abc import Mapping

from devjobs.errors import DevjobsError
from devjobs.resolver.environment import Environment

CATALYST_REGISTRY = "registry.default.svc.cluster.local:5000"


def build_image(
    environment: Environment, source: str, build: str, registry: str = CATALYST_REGISTRY
) -> str:
    """The image Catalyst's build `build` (of source `source`) pushes for `environment`."""
    env_source = environment.source(source)
    tag = (env_source.revision if env_source else None) or "latest"
    # Tags cannot hold `/`; the operator uses the branch verbatim, so a branch with a
    # slash could never have been pushed either: fail here instead of at pull time.
    if "/" in tag or ":" in tag:
        raise DevjobsError(
            f"Environment {environment.ref} spec.sources[{source}]",
            f"revision {tag!r} cannot be an image tag; give --image",
        )
    return f"{registry}/{environment.project}/{build}-{environment.name}:{tag}"


def parse_image_overrides(values: list[str], place: str = "--image") -> dict[str, str]:
    """`IMAGE` (every source) or `SOURCE=IMAGE` items -> {source or "*": image}."""
    result: dict[str, str] = {}
    for value in values:
        source, sep, image = value.partition("=")
        if not sep:
            source, image = "*", value
        # An image reference may itself hold `=`? It may not; a source name may not
        # hold `/` or `:`, so `registry:5000/x` is an image, never `SOURCE=`.
        if "/" in source or ":" in source:
            source, image = "*", value
        if not image or not source:
            raise DevjobsError(place, f"expected IMAGE or SOURCE=IMAGE, got {value!r}")
        result[source] = image
    return result


def resolve_image(
    job_image: str | None,
    source: str,
    environment: Environment,
    overrides: Mapping[str, str],
    builds: Mapping[str, str],
) -> str:
    """The image for a job of `source`; `builds` maps a source to its Catalyst build
    name (default: the source name)."""
    if job_image:
        return job_image
    if source in overrides:
        return overrides[source]
    if "*" in overrides:
        return overrides["*"]
    return build_image(environment, source, builds.get(source, source))
