"""JSONC as devcontainer.json is written: comments and trailing commas, nothing more,
with exact `file:line:col` for every error."""

from __future__ import annotations

import pytest

from devjobs.errors import DevjobsError
from devjobs.resolver.jsonc import MAX_DEPTH, clean, parse, pointer


def error_of(text: str) -> str:
    with pytest.raises(DevjobsError) as caught:
        parse(text, "dc.json")
    return str(caught.value)


def test_comments_and_trailing_commas_are_accepted() -> None:
    text = '{\n  // line\n  "a": [1, 2,], /* block\n */ "b": {"c": "//not a comment",},\n}\n'
    assert parse(text, "dc.json").value == {"a": [1, 2], "b": {"c": "//not a comment"}}


def test_cleaning_keeps_every_offset() -> None:
    text = '{"a": 1, // x\n/* y\n z */ "b": [2,],}'
    cleaned = clean(text, "dc.json")
    assert len(cleaned) == len(text)
    assert [i for i, c in enumerate(text) if c == "\n"] == [
        i for i, c in enumerate(cleaned) if c == "\n"
    ]


def test_a_comment_that_looks_like_a_closing_bracket_does_not_make_a_comma_trailing() -> None:
    text = '{\n  "a": {},\n  // "x": [],\n  "b": 1\n}'
    assert parse(text, "dc.json").value == {"a": {}, "b": 1}


def test_syntax_error_reports_file_line_and_column() -> None:
    assert error_of('{\n  "a": 1\n  "b": 2\n}') == "dc.json:3:3: expecting ',' delimiter"


def test_error_position_is_exact_after_comments() -> None:
    assert error_of('{ /* a\n long comment */ "a": 1,, }').startswith("dc.json:2:25:")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{'a': 1}", "dc.json:1:2:"),  # single quotes: JSON5, not JSONC
        ("{a: 1}", "dc.json:1:2:"),  # unquoted key
        ('{"a": 0x10}', "dc.json:1:8:"),  # hex number
        ('{"a": NaN}', "dc.json:1:7: NaN is not valid JSON"),
        ('{"a": -Infinity}', "dc.json:1:7: -Infinity is not valid JSON"),
        ("[,]", "dc.json:1:2:"),  # a comma with no value before it is not trailing
        ('{"a": 1 /* open', "dc.json:1:9: unterminated /* comment"),
        ("", "dc.json:1:1: expecting value"),
        ('{"a": "tab\there"}', "dc.json:1:11: invalid control character in string"),
    ],
)
def test_json5_extensions_and_broken_text_are_errors(text: str, expected: str) -> None:
    assert error_of(text).startswith(expected)


def test_byte_order_mark_is_not_a_column() -> None:
    assert error_of('\ufeff{"a" 1}').startswith("dc.json:1:6:")


def test_nesting_deeper_than_the_limit_is_an_error_at_the_bracket() -> None:
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert error_of(deep) == f"dc.json:1:{MAX_DEPTH + 1}: nested deeper than {MAX_DEPTH} levels"
    very_deep = "[" * 100_000 + "]" * 100_000  # beyond the decoder's own recursion limit
    assert error_of(very_deep).startswith(f"dc.json:1:{MAX_DEPTH + 1}:")


def test_place_points_at_the_value_and_the_last_duplicate_key() -> None:
    document = parse('{\n "t": {\n  "a/b": [1, 2],\n  "a/b": [3, {"x": 4}] // c\n },\n}', "f")
    assert document.place(["t", "a/b", 1]) == "f:4:14"
    assert document.place(["t", "a/b", 1, "x"]) == "f:4:20"
    assert document.place([]) == "f:1:1"


def test_place_falls_back_to_a_json_pointer_when_the_value_is_missing() -> None:
    assert parse('{"t": {}}', "f").place(["t", "a/b~c"]) == "f#/t/a~1b~0c"


def test_pointer_escapes_per_rfc_6901() -> None:
    assert pointer(["customizations", "devjobs", "jobs", "a/b~"]) == (
        "/customizations/devjobs/jobs/a~1b~0"
    )
