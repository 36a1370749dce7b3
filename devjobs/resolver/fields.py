"""Reading untrusted JSON-like values field by field: Projects and their jobs,
`customizations.devjobs.jobs`, Environments.

Strict, as the generated JSON Schemas describe these values (`devjobs.schemas`, and
Kubernetes' structural schema of the CRD): no coercion (`"30"` is not a number, `1` is
not `true`), unknown fields refused. Every error carries the path of the offending
value, which the callers turn into `file:line:col: field.path: message`. Plain code, no
pydantic: this runs on every `devjobs plan` of a Project (bench/README.md).
tests/test_fields_contract.py checks these readers against the schemas.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import TypeVar

FieldPath = tuple[str | int, ...]
E = TypeVar("E", bound=enum.Enum)


class InvalidField(ValueError):
    """A value that breaks the schema; `path` leads to it from the object read."""

    def __init__(self, path: FieldPath, message: str, *, at_key: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.message = message
        self.at_key = at_key
        """The field name itself is wrong (unknown): point at the key, not the value."""


def type_name(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def string(value: object, path: FieldPath, *, min_length: int = 0) -> str:
    if not isinstance(value, str):
        raise InvalidField(path, f"must be a string, not {type_name(value)}")
    if len(value) < min_length:
        raise InvalidField(path, "must not be empty")
    return value


def string_list(value: object, path: FieldPath, *, min_items: int = 0) -> list[str]:
    if not isinstance(value, list):
        raise InvalidField(path, f"must be a list, not {type_name(value)}")
    if len(value) < min_items:
        raise InvalidField(path, f"must have at least {min_items} item(s)")
    return [string(item, (*path, index)) for index, item in enumerate(value)]


class Fields:
    """The fields of one object, read by name; what was given is remembered (`given`),
    so an override can tell "set to null" from "not set"."""

    def __init__(self, value: object, path: FieldPath, known: Iterable[str] | None) -> None:
        """`known`: the fields allowed, or None for an object with fields of others'
        (Catalyst's) that devjobs only picks from."""
        if not isinstance(value, Mapping):
            raise InvalidField(path, f"must be an object, not {type_name(value)}")
        if known is not None:
            allowed = set(known)
            for key in value:
                if key not in allowed:
                    raise InvalidField((*path, str(key)), "unknown field", at_key=True)
        self.value: Mapping[str, object] = value
        self.path = path

    @property
    def given(self) -> frozenset[str]:
        return frozenset(self.value)

    def at(self, key: str) -> FieldPath:
        return (*self.path, key)

    def raw(self, key: str) -> object:
        return self.value.get(key)

    def mapping(self, key: str, known: Iterable[str] | None = None) -> Fields:
        """A required object field."""
        value = self.value.get(key)
        if value is None:
            raise InvalidField(self.at(key), "required field is missing")
        return Fields(value, self.at(key), known)

    def array(self, key: str) -> list[object]:
        """A list field; missing or null is empty."""
        value = self.value.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise InvalidField(self.at(key), f"must be a list, not {type_name(value)}")
        return value

    def required_string(self, key: str) -> str:
        if self.value.get(key) is None:
            raise InvalidField(self.at(key), "required field is missing")
        return string(self.value[key], self.at(key), min_length=1)

    def string(self, key: str) -> str | None:
        value = self.value.get(key)
        return None if value is None else string(value, self.at(key))

    def boolean(self, key: str) -> bool | None:
        value = self.value.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise InvalidField(self.at(key), f"must be true or false, not {type_name(value)}")

    def flag(self, key: str, default: bool) -> bool:
        """A boolean that may be left out but not set to null."""
        if key not in self.value:
            return default
        value = self.value[key]
        if isinstance(value, bool):
            return value
        raise InvalidField(self.at(key), f"must be true or false, not {type_name(value)}")

    def integer(self, key: str, minimum: int, *, exclusive: bool = False) -> int | None:
        """A whole number >= `minimum` (> with `exclusive`)."""
        value = self.value.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidField(self.at(key), f"must be a whole number, not {type_name(value)}")
        if exclusive and value <= minimum:
            raise InvalidField(self.at(key), f"must be greater than {minimum}")
        if value < minimum:
            raise InvalidField(self.at(key), f"must be greater than or equal to {minimum}")
        return value

    def choice(self, key: str, choices: type[E]) -> E | None:
        value = self.value.get(key)
        if value is None:
            return None
        for member in choices:
            if value == member.value:
                return member
        names = ", ".join(str(member.value) for member in choices)
        raise InvalidField(self.at(key), f"must be one of {names}, not {value!r}")

    def string_map(self, key: str) -> dict[str, str] | None:
        value = self.value.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise InvalidField(self.at(key), f"must be an object, not {type_name(value)}")
        return {str(k): string(v, (*self.at(key), str(k))) for k, v in value.items()}
