"""Secret values a job received, masked in what devjobs keeps of its logs.

A job in the environment's build image gets the app's Secrets (`catalyst-secrets`, by
its workload's `envFrom`) and may name more; whatever it prints of them would otherwise
end up in the log record, the condition message (its tail) and GitHub. As pipelines-as-
code does, the values of every Secret a pod's containers reference (`envFrom.secretRef`,
`env.valueFrom.secretKeyRef`) are read and replaced by `***` before anything is kept.
A Secret that cannot be read (forbidden) means nothing is kept: `SecretsUnreadable`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from devjobs.kube.client import Kube, KubeError, collection_path

MASK = "***"
MIN_LENGTH = 3
"""Shorter values (`1`, `on`) are not masked: replacing them would garble every log."""


class SecretsUnreadable(Exception):
    """A referenced Secret could not be read, so its values cannot be masked."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"Secret {name}: {why}")
        self.name = name


def secret_references(pod: Mapping[str, Any]) -> dict[str, set[str] | None]:
    """Secret name -> the keys the pod's containers read from it (None: all of them)."""
    refs: dict[str, set[str] | None] = {}
    spec = pod.get("spec") or {}
    for field in ("initContainers", "containers"):
        for container in spec.get(field) or []:
            for source in container.get("envFrom") or []:
                name = (source.get("secretRef") or {}).get("name")
                if isinstance(name, str):
                    refs[name] = None
            for var in container.get("env") or []:
                ref = (var.get("valueFrom") or {}).get("secretKeyRef") or {}
                name, key = ref.get("name"), ref.get("key")
                if isinstance(name, str) and isinstance(key, str):
                    keys = refs.setdefault(name, set())
                    if keys is not None:
                        keys.add(key)
    return refs


def secret_values(kube: Kube, namespace: str, pod: Mapping[str, Any]) -> list[str]:
    """The values of the Secrets `pod` references; missing Secrets have none (the pod
    could not have received them either). Raises SecretsUnreadable."""
    values: list[str] = []
    for name, keys in sorted(secret_references(pod).items()):
        path = f"{collection_path('v1', 'Secret', namespace)}/{quote(name)}"
        try:
            secret = kube.get(path)
        except KubeError as error:
            raise SecretsUnreadable(name, error.message or error.reason) from None
        data = (secret or {}).get("data") or {}
        for key, encoded in data.items():
            if keys is not None and key not in keys:
                continue
            try:
                values.append(base64.b64decode(str(encoded)).decode("utf-8", "replace"))
            except (binascii.Error, ValueError):
                continue
    return values


def mask(text: str, values: Iterable[str]) -> str:
    """`text` with every value (and each of its lines, for multi-line values) replaced by
    `***`, longest first so a value containing another is masked whole."""
    pieces = {v for value in values for v in (value, *value.splitlines()) if len(v) >= MIN_LENGTH}
    for piece in sorted(pieces, key=len, reverse=True):
        text = text.replace(piece, MASK)
    return text
