"""One active replica: leader election with a coordination.k8s.io/v1 Lease.

The rules of client-go's leaderelection: the holder renews `renewTime` every
`renew_seconds`; another candidate takes the Lease over only after it has seen the same
`renewTime` unchanged for `lease_seconds` of its own clock (so clocks need not agree).
Every write carries the resourceVersion read, so two candidates never both win. A leader
that cannot renew within `lease_seconds` stops leading (the caller exits and the
Deployment restarts it as a candidate).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from devjobs.kube.client import Kube, KubeError

log = logging.getLogger("devjobs.controller.leader")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElector:
    kube: Kube
    namespace: str
    name: str
    identity: str
    lease_seconds: int = 15
    renew_seconds: float = 5.0
    _seen: tuple[str, str] | None = None
    _seen_at: float = 0.0
    _last_renew: float = field(default=0.0)

    @property
    def path(self) -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{quote(self.namespace)}/leases"
        return f"{base}/{quote(self.name)}"

    def try_acquire(self) -> bool:
        """Take or renew the Lease once; True when this identity holds it now."""
        lease = self.kube.get(self.path)
        now = _now()
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, transitions=0, acquire=now),
            }
            try:
                self.kube.request("POST", self.path.rsplit("/", 1)[0], body=body)
            except KubeError as error:
                if error.status == 409:
                    return False
                raise
            return self._won()
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        observed = (str(holder), str(spec.get("renewTime") or ""))
        mono = time.monotonic()
        if observed != self._seen:
            self._seen, self._seen_at = observed, mono
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and holder != self.identity and mono - self._seen_at < duration:
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquire = str(spec.get("acquireTime") or now)
        else:
            acquire, transitions = now, transitions + 1
        lease["spec"] = self._spec(now, transitions=transitions, acquire=acquire)
        try:
            self.kube.request("PUT", self.path, body=lease)
        except KubeError as error:
            if error.status == 409:
                return False
            raise
        return self._won()

    def _won(self) -> bool:
        self._last_renew = time.monotonic()
        return True

    def _spec(self, now: str, *, transitions: int, acquire: str) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": acquire,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    def acquire(self, stop: threading.Event) -> bool:
        """Block until leading (True) or `stop` is set (False)."""
        logged = False
        while not stop.is_set():
            try:
                if self.try_acquire():
                    log.info(
                        "leading: Lease %s/%s held by %s", self.namespace, self.name, self.identity
                    )
                    return True
            except KubeError as error:
                log.warning("Lease %s/%s: %s", self.namespace, self.name, error)
            if not logged:
                log.info("waiting for Lease %s/%s (held by %s)", self.namespace, self.name,
                         self._seen[0] if self._seen else "?")  # fmt: skip
                logged = True
            stop.wait(self.renew_seconds / 2)
        return False

    def keep(self, stop: threading.Event, lost: threading.Event) -> None:
        """Renew until `stop`; set `lost` (and return) when the Lease could not be kept."""
        while not stop.wait(self.renew_seconds):
            try:
                if self.try_acquire():
                    continue
                log.error("Lease %s/%s taken by %s", self.namespace, self.name, self._seen)
                lost.set()
                return
            except KubeError as error:
                log.warning("renewing Lease %s/%s: %s", self.namespace, self.name, error)
                if time.monotonic() - self._last_renew > self.lease_seconds:
                    lost.set()
                    return

    def release(self) -> None:
        """Give the Lease up on a clean exit, so a successor starts at once."""
        try:
            lease = self.kube.get(self.path)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = ""
                lease["spec"]["leaseDurationSeconds"] = 1
                self.kube.request("PUT", self.path, body=lease)
        except KubeError as error:
            log.warning("releasing Lease %s/%s: %s", self.namespace, self.name, error)
