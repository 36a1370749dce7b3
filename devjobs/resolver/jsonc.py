"""JSONC, as devcontainer.json is written: JSON plus `//` and `/* */` comments and
trailing commas, and nothing else (no single quotes, unquoted keys or hex numbers:
the reference parser rejects those too, so accepting them would hide typos).

Comments and trailing commas are blanked out in place, so every offset in the
cleaned text is the offset in the file; the stdlib's C `json` decoder then parses it
(70-500x faster than the `json5` package: bench/README.md) and its error positions are exact.
A `Document` keeps that text, so later stages can point at the value they reject.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from devjobs.errors import DevjobsError

JsonPath = Sequence[str | int]
"""Keys and indexes from the document root to a value, e.g. ("tasks", "test")."""

MAX_DEPTH = 200
"""Deeper nesting is refused: no devcontainer.json needs it, and it would exhaust
the stack of recursive consumers."""

# The cleaner's regex matches a "gap" of text it keeps (everything but comments and
# trailing commas; strings whole, so nothing inside them counts), then the comment or
# trailing comma that ends it, so Python code runs per comment, not per token. A gap can
# always stop at the next comment, comma or end, so the match never fails and nothing
# backtracks. No possessive quantifiers or atomic groups: Python 3.11's before 3.11.5
# (Debian 12 has 3.11.2) skip text with them. A comment in the trailing-comma look-ahead
# cannot end early instead: a block comment cannot contain `*/`, a line comment runs to
# the end of its line.
_JSON_WS = r"[ \t\n\r]"
_COMMENT = r"(?://[^\n]*(?![^\n])|/\*(?:[^*]|\*(?!/))*\*/)"
_BEFORE_CLOSING = rf"(?:{_JSON_WS}|{_COMMENT})*[\]}}]"
_TOKEN = re.compile(
    rf'(?P<gap>(?:[^"/,]+|"(?:[^"\\\n]|\\.)*"?|,(?!{_BEFORE_CLOSING})|/(?![/*]))*)'
    rf"(?:(?P<comment>//[^\n]*|/\*[\s\S]*?(?:\*/|\Z))|(?P<comma>,)|\Z)"
)
_NOT_NEWLINE = re.compile(r"[^\n]")
_STRING_OR_CONSTANT = re.compile(r'"(?:[^"\\]|\\.)*"|(?P<constant>-?Infinity|NaN)')
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|(?P<bracket>[\[{\]}])')
_WS = re.compile(r"[ \t\n\r]*")
_NEWLINE = re.compile(r"\n")


class _NotJson(ValueError):
    """Raised from the decoder's constant hook: NaN/Infinity are not JSON."""


def _reject_constant(name: str) -> Any:
    raise _NotJson(name)


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_SKIPPER = json.JSONDecoder()


@dataclass(frozen=True)
class Document:
    """A parsed JSONC file: its value, and the cleaned text for locating values in it."""

    file: str
    text: str
    """The file's text with comments and trailing commas blanked: valid JSON, same offsets."""
    value: Any
    _children: dict[int, dict[str | int, int]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    """Container offset → its keys/indexes → value offsets, filled as places are asked
    for, so a hostile file with 50,000 bad names costs one scan per container."""
    _line_starts: list[int] = field(default_factory=list, init=False, repr=False, compare=False)

    def place(self, path: JsonPath) -> str:
        """`file:line:col` of the value at `path`, or `file#/json/pointer` if it has none."""
        offset = self.offset(path)
        if offset is None:
            return f"{self.file}#{pointer(path)}"
        if not self._line_starts:
            self._line_starts.extend([0, *(match.end() for match in _NEWLINE.finditer(self.text))])
        line = bisect.bisect_right(self._line_starts, offset)
        return f"{self.file}:{line}:{offset - self._line_starts[line - 1] + 1}"

    def offset(self, path: JsonPath) -> int | None:
        """Offset of the value at `path`; None if there is no such value.

        With duplicate keys the last one wins, as in the parsed value.
        """
        position = _WS.match(self.text, 0).end()  # type: ignore[union-attr]
        for part in path:
            children = self._children.get(position)
            if children is None:
                children = self._children[position] = _children(self.text, position)
            found = children.get(part)
            if found is None:
                return None
            position = found
        return position


def parse(text: str, file: str) -> Document:
    """Parse JSONC text; DevjobsError at `file:line:col` on anything that is not JSONC."""
    if text.startswith("\ufeff"):
        text = text[1:]  # editors do not count the byte-order mark as a column
    try:
        # Fast path: plain JSON needs no cleaning.
        document = Document(file, text, _decode(text, file))
    except DevjobsError:
        cleaned = clean(text, file)
        if cleaned == text:
            raise
        document = Document(file, cleaned, _decode(cleaned, file))
    check_depth(document)
    return document


def clean(text: str, file: str) -> str:
    """Blank comments and trailing commas, keeping every other character where it is."""
    pieces: list[str] = []
    last_significant = ""  # last character outside blanks and comments so far
    for match in _TOKEN.finditer(text):
        gap = match.group("gap")
        pieces.append(gap)
        kept = gap.rstrip(" \t\n\r")
        if kept:
            last_significant = kept[-1]
        if match.group("comment") is not None:
            token = match.group("comment")
            if token.startswith("/*") and not (len(token) >= 4 and token.endswith("*/")):
                line, col = line_col(text, match.start("comment"))
                raise DevjobsError(f"{file}:{line}:{col}", "unterminated /* comment")
            pieces.append(_NOT_NEWLINE.sub(" ", token))
        elif match.group("comma") is not None:
            if last_significant in ("", "[", "{", ",", ":"):
                pieces.append(",")  # not after a value: leave it for the decoder to reject
            else:
                pieces.append(" ")
            last_significant = ","
    return "".join(pieces)


def _decode(text: str, file: str) -> Any:
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as error:
        raise DevjobsError(f"{file}:{error.lineno}:{error.colno}", _message(error.msg)) from None
    except _NotJson as error:
        offset = _find_constant(text)
        line, col = line_col(text, offset)
        raise DevjobsError(f"{file}:{line}:{col}", f"{error} is not valid JSON") from None
    except RecursionError:
        offset = _find_too_deep(text)
        line, col = line_col(text, offset)
        raise DevjobsError(
            f"{file}:{line}:{col}", f"nested deeper than {MAX_DEPTH} levels"
        ) from None


def _message(decoder_message: str) -> str:
    """The decoder's message, as a lower-case phrase ("Invalid control character at")."""
    message = decoder_message.lower().removesuffix(" at")
    return message.replace("invalid control character", "invalid control character in string")


def check_depth(document: Document) -> None:
    """Refuse documents nested deeper than MAX_DEPTH (the decoder's own limit is higher)."""
    if _depth_within_limit(document.value):
        return
    offset = _find_too_deep(document.text)
    if offset < len(document.text):
        line, col = line_col(document.text, offset)
        raise DevjobsError(
            f"{document.file}:{line}:{col}", f"nested deeper than {MAX_DEPTH} levels"
        )


def _depth_within_limit(value: Any) -> bool:
    """Walk the containers only (no text scan): a big config costs milliseconds."""
    stack: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        container, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        children = container.values() if isinstance(container, dict) else container
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def _find_constant(text: str) -> int:
    for match in _STRING_OR_CONSTANT.finditer(text):
        if match.group("constant"):
            return match.start()
    return 0


def _find_too_deep(text: str) -> int:
    """Offset of the first bracket opening level MAX_DEPTH + 1, or len(text)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return len(text)
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        bracket = match.group("bracket")
        if bracket is None:
            continue
        if bracket in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return match.start()
        else:
            depth -= 1
    return len(text)


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of `offset`."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def pointer(path: JsonPath) -> str:
    """RFC 6901 JSON pointer for `path`: ("tasks", "a/b") → "/tasks/a~1b"."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def _children(text: str, position: int) -> dict[str | int, int]:
    """Keys (object) or indexes (array) of the container at `position` → value offsets."""
    found: dict[str | int, int] = {}
    if position >= len(text) or text[position] not in "{[":
        return found
    closing = "}" if text[position] == "{" else "]"
    position = _WS.match(text, position + 1).end()  # type: ignore[union-attr]
    index = 0
    while text[position] != closing:
        key: str | int = index
        if closing == "}":
            key, position = json.decoder.scanstring(text, position + 1)  # type: ignore[attr-defined]
            position = _WS.match(text, position).end() + 1  # type: ignore[union-attr]  # ':'
            position = _WS.match(text, position).end()  # type: ignore[union-attr]
        found[key] = position
        index += 1
        _, position = _SKIPPER.raw_decode(text, position)
        position = _WS.match(text, position).end()  # type: ignore[union-attr]
        if text[position] == ",":
            position = _WS.match(text, position + 1).end()  # type: ignore[union-attr]
    return found
