"""Deterministic Kubernetes names and the spec hash that makes a run idempotent.

A Job's name is `<env>-<source>-<job>-<hash10>`: the same job at the same commit always
gets the same name (re-running finds the existing Job), a changed job or commit gets a
new one. Job names must stay <= 63 characters: the Job controller copies the name into
the pods' `batch.kubernetes.io/job-name` label, whose values are limited to 63.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

MAX_LABEL = 63
HASH_LENGTH = 10


def digest(value: Any, length: int = HASH_LENGTH) -> str:
    """A short, stable hash of a JSON-compatible value (sorted keys, no whitespace)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:length]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def dns_label(*parts: str, suffix: str = "", limit: int = MAX_LABEL) -> str:
    """Join `parts` into an RFC 1123 label, ending in `-suffix` when given.

    When the joined name is too long, or had to be changed to be valid, its prefix is
    cut and a hash of the original parts is appended, so distinct inputs stay distinct.
    """
    raw = "-".join(parts)
    base = "-".join(p for p in (_slug(part) for part in parts) if p) or "x"
    if not suffix and base == raw and len(base) <= limit:
        return base
    if not suffix:
        suffix = digest(list(parts), 8)
    room = limit - len(suffix) - 1
    head = base[:room].rstrip("-")
    return f"{head}-{suffix}" if head else suffix


def job_name(environment: str, source: str, job: str, spec_hash: str) -> str:
    """The batch/v1 Job name for one job of one environment at one spec hash."""
    return dns_label(environment, source, job, suffix=spec_hash[:HASH_LENGTH])


def container_name(*parts: str) -> str:
    """A container name (RFC 1123 label), hashed when the parts are not one already."""
    return dns_label(*parts)


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def is_label_value(text: str) -> bool:
    """Whether `text` is a valid label value as it is."""
    return len(text) <= MAX_LABEL and bool(_LABEL_VALUE.match(text))


def label_value(text: str) -> str:
    """A valid label value for `text`: itself when valid, else a cleaned, hashed form."""
    if is_label_value(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")
    suffix = digest(text, 8)
    head = cleaned[: MAX_LABEL - len(suffix) - 1].rstrip("-_.")
    return f"{head}-{suffix}" if head else suffix
