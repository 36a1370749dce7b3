"""Which pod templates of an Environment's workload devjobs opened the PreDeploy gate for,
and at which commits: the record `controller.gates` reads to let a replacement pod start.

In production and development mode the operator's pods name no commit, so a gated pod
belongs to the Environment's commit when devjobs opens it. A pod that replaces one of an
earlier template (a node drained while the next commit's PreDeploy job failed) must
start all the same, or the previous version stops serving; its pod template hash
(`pod-template-hash`, set by the Deployment controller) is how devjobs knows it was
opened before. The pod that was opened may be long gone (one replica is the rule for
preview environments), so the record is kept in a ConfigMap beside the log records in
the jobs namespace, deleted with it. Pure, but for nothing: `act` applies it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devjobs.kube import naming
from devjobs.kube import vocabulary as v
from devjobs.kube.render import owner_or_origin
from devjobs.resolver.environment import Environment

DATA_KEY = "openings.json"
MAX_ENTRIES = 16
"""Templates remembered, newest last: a workload has one or two live templates."""


@dataclass(frozen=True)
class Opening:
    """A pod template devjobs opened the gate for, and the commits it was opened at."""

    template: str
    commits: tuple[str, ...]


def record_name(environment: str) -> str:
    """The record's ConfigMap name: one per Environment (a jobs namespace may hold many)."""
    return naming.dns_label(v.OPENINGS_NAME, environment)


def read_openings(
    configmaps: Iterable[Mapping[str, Any]], env: Environment, namespace: str
) -> tuple[Opening, ...]:
    """The Environment's openings, oldest first; a record that cannot be parsed counts as
    none (replacement pods then wait as new ones do, the safe side)."""
    name = record_name(env.name)
    for cm in configmaps:
        meta = cm.get("metadata") or {}
        if meta.get("namespace") != namespace or meta.get("name") != name:
            continue
        try:
            entries = json.loads(str((cm.get("data") or {}).get(DATA_KEY) or "[]"))
            return tuple(
                Opening(str(e["template"]), tuple(str(c) for c in e["commits"]))
                for e in entries
                if isinstance(e, dict)
            )
        except (ValueError, KeyError, TypeError):
            return ()
    return ()


def with_opening(
    openings: Sequence[Opening], template: str, commits: Iterable[str]
) -> tuple[Opening, ...]:
    """`openings` with `template` opened at `commits`, newest last, at most MAX_ENTRIES."""
    entry = Opening(template, tuple(sorted(set(commits))))
    kept = [o for o in openings if o.template != template]
    return (*kept, entry)[-MAX_ENTRIES:]


def configmap(env: Environment, openings: Sequence[Opening]) -> dict[str, Any]:
    """The record as a ConfigMap for server-side apply."""
    metadata: dict[str, Any] = {
        "name": record_name(env.name),
        "namespace": env.jobs_namespace,
        "labels": {
            v.LABEL_MANAGED_BY: v.MANAGED_BY,
            v.LABEL_COMPONENT: v.OPENINGS_COMPONENT,
            v.LABEL_ENVIRONMENT: naming.label_value(env.name),
        },
        "annotations": {v.ANNOTATION_ENVIRONMENT: env.name, **owner_or_origin(env)},
    }
    if env.uid and env.place.owned:
        metadata["ownerReferences"] = [env.owner_reference()]
    entries = [{"template": o.template, "commits": list(o.commits)} for o in openings]
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {DATA_KEY: json.dumps(entries, separators=(",", ":"))},
    }
