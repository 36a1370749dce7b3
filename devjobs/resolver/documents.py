"""Reading YAML/JSON resource files while remembering where every value came from.

Errors about a Project or Environment must name `file:line:col` and the field path, so
the loader keeps, for each document, a map from JSON pointer to the (line, column) of
the value. JSON is read by the same YAML loader (JSON is, in practice, YAML).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devjobs.errors import DevjobsError
from devjobs.resolver.fields import InvalidField

if TYPE_CHECKING:
    import yaml

MAX_RESOURCE_BYTES = 4 * 1024 * 1024
"""Resource files are small; anything bigger is a mistake or an attack."""


@dataclass(frozen=True)
class Document:
    """One YAML document: its value, the file it came from, and value positions."""

    file: str
    index: int
    value: Any
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    """JSON pointer -> 1-based (line, column) of the value."""
    key_positions: dict[str, tuple[int, int]] = field(default_factory=dict)
    """JSON pointer -> 1-based (line, column) of the mapping key naming that value."""

    def place(self, pointer: str, *, at_key: bool = False) -> str:
        """`file:line:col` of the value at `pointer` (or of its key), else of the closest
        ancestor."""
        if at_key and pointer in self.key_positions:
            line, col = self.key_positions[pointer]
            return f"{self.file}:{line}:{col}"
        probe = pointer
        while True:
            if probe in self.positions:
                line, col = self.positions[probe]
                return f"{self.file}:{line}:{col}"
            if not probe:
                return self.file
            probe = probe.rsplit("/", 1)[0]

    def where(self, pointer: str, *, at_key: bool = False) -> str:
        """The place plus the field path: what error messages start with."""
        if not pointer:
            return self.place("")
        return f"{self.place(pointer, at_key=at_key)}: {pointer_to_path(pointer)}"

    def invalid(self, error: InvalidField, base: str = "") -> DevjobsError:
        """`file:line:col: field.path: message` of a field error below pointer `base`."""
        pointer = base + "".join(f"/{escape_token(str(part))}" for part in error.path)
        return DevjobsError(self.where(pointer, at_key=error.at_key), error.message)


def object_document(value: Mapping[str, Any]) -> Document:
    """A resource read from the API server: places are `Kind namespace/name: field.path`."""
    metadata = value.get("metadata")
    if not isinstance(metadata, Mapping):
        metadata = {}
    name = f"{metadata.get('namespace', '')}/{metadata.get('name', '')}".lstrip("/")
    return Document(f"{value.get('kind', 'object')} {name}", 0, dict(value))


def escape_token(token: str) -> str:
    """RFC 6901 escaping of one pointer token."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer_to_path(pointer: str) -> str:
    """`/spec/sources/0/jobs/1` -> `spec.sources[0].jobs[1]` (kubectl's field path style)."""
    path = ""
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if token.isdigit():
            path += f"[{token}]"
        else:
            path += f".{token}" if path else token
    return path


def _construct(
    loader: yaml.SafeLoader,
    node: yaml.Node,
    pointer: str,
    positions: dict[str, tuple[int, int]],
    key_positions: dict[str, tuple[int, int]],
) -> Any:
    """Build plain Python values from the node tree, recording each value's position.
    SafeLoader constructs the scalars: no arbitrary objects."""
    import yaml

    positions[pointer] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # YAML merge keys (<<) as SafeLoader does
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _PositionedError(key_node, "mapping keys must be strings")
            key = str(key_node.value)
            if key in result:
                raise _PositionedError(key_node, f"duplicate key {key!r}")
            child = f"{pointer}/{escape_token(key)}"
            key_positions[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _construct(loader, value_node, child, positions, key_positions)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _construct(loader, item, f"{pointer}/{i}", positions, key_positions)
            for i, item in enumerate(node.value)
        ]
    return loader.construct_object(node, deep=True)


class _PositionedError(Exception):
    def __init__(self, node: yaml.Node, message: str) -> None:
        super().__init__(message)
        self.node = node


def load_documents(path: Path, *, display: str | None = None) -> list[Document]:
    """All non-empty documents of a YAML or JSON file, with value positions."""
    import yaml  # only commands given a resource file pay for it

    name = display or str(path)
    try:
        if path.stat().st_size > MAX_RESOURCE_BYTES:
            raise DevjobsError(
                name, f"file is larger than {MAX_RESOURCE_BYTES // (1024 * 1024)} MiB"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DevjobsError(name, "no such file") from None
    except IsADirectoryError:
        raise DevjobsError(name, "is a directory, not a resource file") from None
    except UnicodeDecodeError as error:
        raise DevjobsError(name, f"not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise DevjobsError(name, error.strerror or str(error)) from None
    documents: list[Document] = []
    try:
        for index, node in enumerate(yaml.compose_all(text, Loader=yaml.SafeLoader)):
            if node is None:
                continue
            positions: dict[str, tuple[int, int]] = {}
            key_positions: dict[str, tuple[int, int]] = {}
            loader = yaml.SafeLoader("")
            try:
                value = _construct(loader, node, "", positions, key_positions)
            finally:
                loader.dispose()
            documents.append(Document(name, index, value, positions, key_positions))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise DevjobsError(where, f"invalid YAML: {error.problem or error.context}") from None
    except _PositionedError as error:
        mark = error.node.start_mark
        raise DevjobsError(f"{name}:{mark.line + 1}:{mark.column + 1}", str(error)) from None
    except yaml.YAMLError as error:
        raise DevjobsError(name, f"invalid YAML: {error}") from None
    return documents
