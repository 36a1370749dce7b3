"""Names devjobs gives Kubernetes objects: valid, bounded, deterministic, distinct."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from devjobs.kube import naming

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_short_names_read_as_env_source_job_hash() -> None:
    assert (
        naming.job_name("pr-12", "web", "test", "0123456789abcdef") == "pr-12-web-test-0123456789"
    )


def test_long_names_are_cut_to_63_and_keep_the_hash() -> None:
    name = naming.job_name("e" * 40, "s" * 30, "j" * 30, "abcdef0123456789")
    assert len(name) == 63
    assert name.endswith("-abcdef0123")
    assert LABEL.match(name)


@given(
    st.text(min_size=1, max_size=80),
    st.text(min_size=1, max_size=80),
    st.text(min_size=1, max_size=80),
    st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
)
def test_job_names_are_always_valid_labels(env: str, source: str, job: str, h: str) -> None:
    name = naming.job_name(env, source, job, h)
    assert len(name) <= 63 and LABEL.match(name)
    assert name == naming.job_name(env, source, job, h)


def test_container_names_that_needed_changes_get_a_hash_so_they_stay_distinct() -> None:
    assert naming.container_name("lint") == "lint"
    a, b = naming.container_name("Lint_JS"), naming.container_name("lint-js")
    assert a != b and LABEL.match(a)


@given(st.text(max_size=120))
def test_label_values_are_valid_and_bounded(text: str) -> None:
    value = naming.label_value(text)
    assert len(value) <= 63
    assert re.match(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", value)


def test_digest_ignores_key_order() -> None:
    assert naming.digest({"a": 1, "b": [1, 2]}) == naming.digest({"b": [1, 2], "a": 1})
    assert naming.digest({"a": 1}) != naming.digest({"a": 2})
