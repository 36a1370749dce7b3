"""The PreDeploy gate as a mutating admission webhook, pure: a request body in, an answer out.

Clusters without MutatingAdmissionPolicy (Kubernetes 1.30-1.35 without its beta flags)
gate the workload's pods with the webhook of `deploy/predeploy-gate-webhook/` instead of
`deploy/predeploy-gate.yaml`: the API server sends each new pod that the configuration
selects (label `app=web`, environment namespace) here as an `admission.k8s.io/v1`
AdmissionReview, and the answer adds `vocabulary.PREDEPLOY_GATE` to its
`spec.schedulingGates` by a JSON patch, exactly as the policy does.

The body is untrusted (anyone who reaches the port may send one): refused with HTTP 400
unless it is at most `MAX_BODY` bytes of strict JSON (no NaN or Infinity, no duplicate
key) holding an AdmissionReview v1 with a request uid. A well-formed review is always
answered with its uid: allowed and unchanged unless it is the CREATE of a pod carrying
the workload label; allowed with the gate when it is one (no patch when the gate is
there already, e.g. because the policy is installed too); refused when that pod is
unreadable, since letting it through ungated would skip PreDeploy. A dry run gets the
same answer: the patch has no side effect, and `--dry-run=server` shows what a real
create would store.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from devjobs.catalyst import WORKLOAD_POD_LABEL
from devjobs.kube.vocabulary import PREDEPLOY_GATE

API_VERSION = "admission.k8s.io/v1"
KIND = "AdmissionReview"
MAX_BODY = 8 * 1024 * 1024
"""The API server accepts request bodies up to 3 MiB; its review of a pod that large,
JSON with the request's envelope, stays well under this. Larger is not from it."""


class Refused(ValueError):
    """The body is not an AdmissionReview to answer (HTTP 400)."""


@dataclass(frozen=True)
class Answer:
    """The HTTP status and JSON body to send back."""

    status: int
    body: Mapping[str, Any]
    outcome: str
    """Why, in a few words, for the debug log."""


def answer(body: bytes) -> Answer:
    """The answer to one request body: 400 for garbage, else the review's response."""
    try:
        request = parse(body)
    except Refused as error:
        return Answer(400, {"error": str(error)}, f"refused: {error}")
    response, outcome = respond(request)
    return Answer(200, {"apiVersion": API_VERSION, "kind": KIND, "response": response}, outcome)


def _no_constant(name: str) -> Any:
    raise Refused(f"not JSON: {name}")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        raise Refused("not JSON: a duplicate key")
    return found


_DECODER = json.JSONDecoder(parse_constant=_no_constant, object_pairs_hook=_unique_keys)


def parse(body: bytes) -> Mapping[str, Any]:
    """The review's `request`, or `Refused` saying what is wrong with the body."""
    if len(body) > MAX_BODY:
        raise Refused(f"larger than {MAX_BODY} bytes")
    try:
        review = _DECODER.decode(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Refused("not UTF-8") from None
    except RecursionError:
        raise Refused("not JSON: nested too deeply") from None
    except json.JSONDecodeError as error:
        raise Refused(f"not JSON: {error}") from None
    if not isinstance(review, dict):
        raise Refused("not a JSON object")
    if review.get("apiVersion") != API_VERSION or review.get("kind") != KIND:
        raise Refused(f"not an {API_VERSION} {KIND}")
    request = review.get("request")
    if not isinstance(request, dict):
        raise Refused("no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise Refused("no request uid")
    return request


def respond(request: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The review's response to `request` (its uid echoed), and its outcome."""
    allowed = {"uid": request["uid"], "allowed": True}
    resource = request.get("resource")
    what = (resource.get("group"), resource.get("resource")) if isinstance(resource, dict) else ()
    if what != ("", "pods") or request.get("subResource") or request.get("operation") != "CREATE":
        return allowed, "unchanged: not a pod CREATE"
    try:
        patch, outcome = gate_patch(request.get("object"))
    except Refused as error:
        refusal = {"code": 400, "message": f"devjobs PreDeploy gate: {error}"}
        return {"uid": request["uid"], "allowed": False, "status": refusal}, f"refused: {error}"
    if not patch:
        return allowed, outcome
    encoded = base64.b64encode(json.dumps(patch).encode()).decode()
    return {**allowed, "patchType": "JSONPatch", "patch": encoded}, outcome


def gate_patch(pod: Any) -> tuple[list[dict[str, Any]], str]:
    """The JSON patch adding the gate to a new pod (empty for a pod that is not the
    workload's or has the gate already), and its outcome."""
    if not isinstance(pod, dict) or not isinstance(pod.get("spec"), dict):
        raise Refused("the pod has no spec")
    meta = pod.get("metadata") or {}
    labels = (meta.get("labels") if isinstance(meta, dict) else None) or {}
    if not isinstance(meta, dict) or not isinstance(labels, dict):
        raise Refused("the pod's metadata or labels are not a map")
    label, value = WORKLOAD_POD_LABEL
    if labels.get(label) != value:
        return [], "unchanged: not a workload pod"
    gates = pod["spec"].get("schedulingGates")
    gate = {"name": PREDEPLOY_GATE}
    if gates is None:
        return [{"op": "add", "path": "/spec/schedulingGates", "value": [gate]}], "gated"
    if not isinstance(gates, list) or not all(isinstance(g, dict) for g in gates):
        raise Refused("the pod's spec.schedulingGates is not a list of gates")
    if any(g.get("name") == PREDEPLOY_GATE for g in gates):
        return [], "unchanged: gated already"
    return [{"op": "add", "path": "/spec/schedulingGates/-", "value": gate}], "gated"
