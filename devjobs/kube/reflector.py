"""One reflector: a local copy of one kind of object, kept by list + watch.

What controller-runtime's informers do, small: list, then watch from the list's
resourceVersion with bookmarks (so a quiet watch still advances its version), resume
from the last version seen when a watch ends or breaks, list again on `410 Gone`, and
back off exponentially while the API server is unreachable. Every caller that watches
(the controller, `devjobs run`'s Job follower, the rollout follower, the web view) uses
this one, and several listeners may share one reflector: one watch per kind, however
many are interested.

Listeners are called from the reflector's thread with `(event, old, new)`: `ADDED`
(old None), `MODIFIED` (only when the resourceVersion changed) or `DELETED` (new None).
A re-list after `410` reports what changed while the watch was gone the same way, so a
listener never has to tell a list from a watch.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal

from devjobs.kube.client import Kube, KubeError, iter_lines

log = logging.getLogger("devjobs.kube")

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
Listener = Callable[[EventType, Mapping[str, Any] | None, Mapping[str, Any] | None], None]
Key = tuple[str, str]
"""(namespace, name); namespace is '' for cluster-scoped objects."""

FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0


def object_key(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Reflector:
    """The objects at `path` (a collection: one namespace's or all namespaces'),
    optionally narrowed by label and field selectors."""

    def __init__(
        self,
        kube: Kube,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        api_version: str = "",
        kind: str = "",
        keep_managed_fields: bool = False,
        watch_seconds: int = 300,
    ) -> None:
        self.kube = kube
        self.path = path
        self.query: dict[str, str] = {}
        if label_selector:
            self.query["labelSelector"] = label_selector
        if field_selector:
            self.query["fieldSelector"] = field_selector
        self.api_version = api_version
        self.kind = kind
        """Set on each object (lists return items without apiVersion and kind)."""
        self.keep_managed_fields = keep_managed_fields
        self.watch_seconds = watch_seconds
        self.synced = threading.Event()
        """Set once the first list is in the store: before it, an absent object says
        nothing."""
        self.version = ""
        """The last resourceVersion seen (list, event or bookmark)."""
        self.lists = 0
        """How many times the collection was listed (1, plus one per 410)."""
        self._store: dict[Key, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def __repr__(self) -> str:
        return f"Reflector({self.path!r}, {self.query!r})"

    # --- reading ---------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener` on every change from now on; objects already in the store are
        reported to it first as ADDED, so a late listener misses nothing."""
        with self._lock:
            self._listeners.append(listener)
            present = list(self._store.values())
        for obj in present:
            listener("ADDED", None, obj)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._store.values())

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._store.get((namespace, name))

    # --- running ---------------------------------------------------------------------

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), daemon=True, name=repr(self))
        thread.start()
        return thread

    def run(self, stop: threading.Event) -> None:
        """List and watch until `stop` is set."""
        delay = FIRST_BACKOFF
        while not stop.is_set():
            try:
                if not self.version:
                    self._list()
                self._watch(stop)
                delay = FIRST_BACKOFF
            except KubeError as error:
                if error.status == 410:
                    self.version = ""  # too old: list again, at once
                    continue
                log.warning("watch %s: %s (retry in %.1fs)", self, error, delay)
                stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            except Exception as error:  # a broken stream: resume from the last version
                log.warning("watch %s: %s (retry in %.1fs)", self, error, delay)
                stop.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    def _list(self) -> None:
        data = self.kube.request("GET", self.path, dict(self.query))
        self.lists += 1
        listed = {object_key(o): self._clean(o) for o in data.get("items") or []}
        with self._lock:
            gone = [o for k, o in self._store.items() if k not in listed]
        for obj in gone:
            self._remove(obj)
        for obj in listed.values():
            self._put(obj)
        self.version = str(data["metadata"]["resourceVersion"])
        self.synced.set()

    def _watch(self, stop: threading.Event) -> None:
        query: dict[str, str | int | bool] = {
            **self.query,
            "watch": True,
            "resourceVersion": self.version,
            "allowWatchBookmarks": True,
            "timeoutSeconds": self.watch_seconds,
        }
        response = self.kube.request(
            "GET", self.path, query, timeout=(10, self.watch_seconds + 30), stream=True
        )
        try:
            for line in iter_lines(response):
                if stop.is_set():
                    return
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise KubeError(
                        int(obj.get("code") or 0),
                        str(obj.get("reason") or ""),
                        str(obj.get("message") or ""),
                    )
                self.version = _version(obj) or self.version
                if kind in ("ADDED", "MODIFIED"):
                    self._put(self._clean(obj))
                elif kind == "DELETED":
                    self._remove(obj)
        finally:
            response.release_conn()

    # --- the store -------------------------------------------------------------------

    def _clean(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.api_version:
            obj.setdefault("apiVersion", self.api_version)
        if self.kind:
            obj.setdefault("kind", self.kind)
        if not self.keep_managed_fields:
            (obj.get("metadata") or {}).pop("managedFields", None)
        return obj

    def _put(self, obj: dict[str, Any]) -> None:
        key = object_key(obj)
        with self._lock:
            old = self._store.get(key)
            self._store[key] = obj
            listeners = list(self._listeners)
        if old is not None and _version(old) == _version(obj):
            return
        event: EventType = "ADDED" if old is None else "MODIFIED"
        for listener in listeners:
            listener(event, old, obj)

    def _remove(self, obj: Mapping[str, Any]) -> None:
        with self._lock:
            old = self._store.pop(object_key(obj), None)
            listeners = list(self._listeners)
        if old is None:
            return
        for listener in listeners:
            listener("DELETED", old, None)
