"""Who the viewer is and what they may do.

Seeing an Environment needs `get environments` in its namespace; Run needs `patch
environments` there. Both are asked of the API server for every request (answers are
remembered within the request only):

- locally (`devjobs ui`), the viewer is the kubeconfig's user: `SelfSubjectAccessReview`
  with their own client, which is also the one the reflectors and Run use;
- in the cluster, each request carries the viewer's bearer token: devjobs checks it with
  a `TokenReview` and asks a `SubjectAccessReview` for that user, groups and extra. Run
  is then written with a client holding only the viewer's token (`cluster.kube_as`), so
  devjobs' own identity is never lent to a viewer.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devjobs.ui.cluster import CATALYST_API_VERSION, Kube, KubeError, kube_as, log

GROUP = CATALYST_API_VERSION.split("/", 1)[0]
RESOURCE = "environments"
TOKEN_REVIEW_TTL = 10.0
"""Seconds a TokenReview's answer is reused for the same token (SARs are never reused
across requests)."""


@dataclass(frozen=True)
class UserInfo:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def resource_attributes(verb: str, namespace: str) -> dict[str, str]:
    return {"namespace": namespace, "verb": verb, "group": GROUP, "resource": RESOURCE}


def subject_access_review(user: UserInfo, verb: str, namespace: str) -> dict[str, Any]:
    """The SubjectAccessReview asking whether `user` may `verb` Environments there."""
    spec: dict[str, Any] = {
        "user": user.username,
        "groups": list(user.groups),
        "resourceAttributes": resource_attributes(verb, namespace),
    }
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def user_from_token_review(answer: Mapping[str, Any]) -> UserInfo | None:
    status = answer.get("status") or {}
    if not status.get("authenticated"):
        return None
    user = status.get("user") or {}
    name = user.get("username")
    if not isinstance(name, str) or not name:
        return None
    return UserInfo(
        username=name,
        uid=str(user.get("uid") or ""),
        groups=tuple(str(g) for g in user.get("groups") or ()),
        extra={
            str(k): tuple(str(x) for x in v or ()) for k, v in (user.get("extra") or {}).items()
        },
    )


class Viewer:
    """One request's viewer: `can(verb, namespace)` asks the API server once per pair."""

    def __init__(
        self, name: str, session: str, writer: Callable[[], Kube], ask: Callable[[str, str], bool]
    ) -> None:
        self.name = name
        self.session = session
        """The id the CSRF token is bound to."""
        self.writer = writer
        """Makes the client that acts as this viewer (Run)."""
        self._ask = ask
        self._answers: dict[tuple[str, str], bool] = {}

    def can(self, verb: str, namespace: str) -> bool:
        key = (verb, namespace)
        if key not in self._answers:
            try:
                self._answers[key] = bool(self._ask(verb, namespace))
            except KubeError as error:
                log.warning("access review %s %s: %s", verb, namespace, error)
                self._answers[key] = False
        return self._answers[key]


def _allowed(answer: Any) -> bool:
    return bool(isinstance(answer, Mapping) and (answer.get("status") or {}).get("allowed"))


def self_access_viewer(kube: Kube, session: str) -> Viewer:
    """Local mode: the kubeconfig's user, asking SelfSubjectAccessReviews."""

    def ask(verb: str, namespace: str) -> bool:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": resource_attributes(verb, namespace)},
        }
        path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
        return _allowed(kube.request("POST", path, body=body))

    return Viewer("you (kubeconfig)", session, lambda: kube, ask)


class TokenReviewer:
    """Cluster mode: bearer token -> Viewer, through devjobs' own client (which may create
    TokenReviews and SubjectAccessReviews, nothing else is done with it for a viewer)."""

    def __init__(self, kube: Kube, audiences: tuple[str, ...] = ()) -> None:
        self.kube = kube
        self.audiences = audiences
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, UserInfo | None]] = {}

    def review(self, token: str) -> UserInfo | None:
        from devjobs.ui.security import session_id

        key = session_id(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now - hit[0] < TOKEN_REVIEW_TTL:
            return hit[1]
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        answer = self.kube.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body=body)
        user = user_from_token_review(answer or {})
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now, user)
        return user

    def viewer(self, token: str, session: str) -> Viewer | None:
        user = self.review(token)
        if user is None:
            return None

        def ask(verb: str, namespace: str) -> bool:
            path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
            body = subject_access_review(user, verb, namespace)
            return _allowed(self.kube.request("POST", path, body=body))

        return Viewer(user.username, session, lambda: kube_as(self.kube, token), ask)
