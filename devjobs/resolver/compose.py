"""The image of a Docker Compose devcontainer's service, read from its compose files.

Only `services.<service>.image` matters: later files override earlier ones, as
`docker compose -f a -f b` does. A service without `image:` (build-only) runs in the
environment's build image, like a Dockerfile config. Compose files come from the
untrusted checkout, so they are read through `read_checkout_file`.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any

from devjobs.errors import DevjobsError
from devjobs.resolver.discovery import read_checkout_file


def _loader() -> type[Any]:
    """A safe loader that also reads Compose's own tags (`!reset`, `!override`) as
    plain values: only `image:` matters here."""
    import yaml  # only compose configs pay for it

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def untagged(loader: Any, _suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_scalar(node)

    class ComposeLoader(base):  # type: ignore[valid-type,misc]
        pass

    ComposeLoader.add_multi_constructor("!", untagged)
    return ComposeLoader


def service_image(
    checkout: Path, config_file: str, compose_files: list[str], service: str
) -> tuple[str | None, list[str]]:
    """`(image or None, warnings)` for `service`, compose paths relative to the config's folder."""
    import yaml

    loader = _loader()
    folder = posixpath.dirname(config_file)
    image: str | None = None
    seen = False
    for written in compose_files:
        relative = posixpath.normpath(posixpath.join(folder, written))
        if not (checkout / relative).exists() and not (checkout / relative).is_symlink():
            return None, [
                f"{config_file}: compose file {relative} not found; jobs run in the "
                "environment's build image"
            ]
        data = read_checkout_file(checkout, relative)
        try:
            document = yaml.load(data, Loader=loader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark
            place = f"{relative}:{mark.line + 1}:{mark.column + 1}" if mark else relative
            raise DevjobsError(place, f"invalid YAML: {error.problem}") from None
        except (yaml.YAMLError, RecursionError) as error:
            raise DevjobsError(relative, f"invalid YAML: {error}") from None
        services = document.get("services") if isinstance(document, dict) else None
        definition = services.get(service) if isinstance(services, dict) else None
        if not isinstance(definition, dict):
            continue
        seen = True
        value = definition.get("image")
        if isinstance(value, str) and value:
            image = value
        elif value is not None:
            raise DevjobsError(relative, f"services.{service}.image must be a string")
    if not seen:
        return None, [
            f"{config_file}: service {service!r} is in none of its compose files; jobs run "
            "in the environment's build image"
        ]
    return image, []
