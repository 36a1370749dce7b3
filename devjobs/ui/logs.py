"""One upstream log stream per container, fanned out to every follower.

The first follower of a container opens `Kube.log_lines(follow=True)` on a thread; the
lines it reads are kept (up to `MAX_LINES`) and pushed to every follower's asyncio
queue, so a hundred open tabs on one job hold one stream to the API server. A follower
that arrives later gets the lines so far, then the live ones. When the container's log
ends (the container exited) the topic stays for `KEEP_SECONDS` so late followers need
no new request.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import quote

from devjobs.kube.client import collection_path
from devjobs.kube.masking import SecretsUnreadable, mask, secret_values
from devjobs.ui.cluster import Kube, KubeError, log

MAX_LINES = 20_000
OPEN_ATTEMPTS = 8
"""How often a container's log stream is opened before its error is shown."""
KEEP_SECONDS = 30.0
_END = None


@dataclass
class _Topic:
    lines: list[str] = field(default_factory=list)
    ended: bool = False
    ended_at: float = 0.0
    error: str = ""
    followers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[str | None]]] = field(
        default_factory=set
    )


class LogHub:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.upstreams = 0
        """How many log streams were opened to the API server (the bench reads it)."""
        self._lock = threading.Lock()
        self._topics: dict[tuple[str, str, str], _Topic] = {}

    def followers(self) -> int:
        with self._lock:
            return sum(len(t.followers) for t in self._topics.values())

    def _topic(self, key: tuple[str, str, str]) -> _Topic:
        """The topic of a container, its reader started (call with the lock held)."""
        now = time.monotonic()
        for old in [k for k, t in self._topics.items() if t.ended and not t.followers
                    and now - t.ended_at > KEEP_SECONDS]:  # fmt: skip
            del self._topics[old]
        topic = self._topics.get(key)
        if topic is None or (topic.error and not topic.followers):
            topic = self._topics[key] = _Topic()
            self.upstreams += 1
            threading.Thread(
                target=self._read, args=(key, topic), daemon=True, name=f"devjobs-ui-log-{key}"
            ).start()
        return topic

    def _read(self, key: tuple[str, str, str], topic: _Topic) -> None:
        namespace, pod, container = key
        try:
            values = self._secret_values(namespace, pod)
            seen = 0
            for attempt in range(OPEN_ATTEMPTS):
                try:
                    for count, raw in enumerate(
                        self.kube.log_lines(namespace, pod, container, follow=True), 1
                    ):
                        if count <= seen:
                            continue  # re-opened: these were shown already
                        seen = count
                        self._append(topic, mask(raw, values))
                    break
                except KubeError as error:
                    # A container that has just started may have no log file yet (the
                    # kubelet says so); try again shortly. A pod that is gone ends it.
                    if error.status == 404 or attempt == OPEN_ATTEMPTS - 1:
                        raise
                    time.sleep(0.3 * (attempt + 1))
        except SecretsUnreadable as error:
            topic.error = f"log not shown: {error}; its values could not be masked"
        except KubeError as error:
            topic.error = error.message or str(error)
            if error.status not in (400, 404):
                log.warning("log %s/%s/%s: %s", namespace, pod, container, error)
        except Exception as error:  # a broken stream ends the topic; followers re-open
            topic.error = str(error)
        with self._lock:
            topic.ended = True
            topic.ended_at = time.monotonic()
            followers = list(topic.followers)
        for loop, queue in followers:
            _push(loop, queue, _END)

    def _append(self, topic: _Topic, line: str) -> None:
        with self._lock:
            if len(topic.lines) >= MAX_LINES:
                del topic.lines[: MAX_LINES // 10]
            topic.lines.append(line)
            followers = list(topic.followers)
        for loop, queue in followers:
            _push(loop, queue, line)

    def _secret_values(self, namespace: str, pod: str) -> list[str]:
        """The values the pod received from Secrets (masked in every line shown)."""
        obj = self.kube.get(f"{collection_path('v1', 'Pod', namespace)}/{quote(pod)}")
        return secret_values(self.kube, namespace, obj) if obj is not None else []

    async def follow(self, namespace: str, pod: str, container: str) -> AsyncIterator[str]:
        """The container's log lines: those so far, then live ones until it ends."""
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        follower = (asyncio.get_running_loop(), queue)
        with self._lock:
            topic = self._topic((namespace, pod, container))
            so_far = list(topic.lines)
            ended = topic.ended
            if not ended:
                topic.followers.add(follower)
        try:
            for line in so_far:
                yield line
            if ended:
                return
            while True:
                item = await queue.get()
                if item is _END:
                    return
                yield item
        finally:
            with self._lock:
                topic.followers.discard(follower)

    def failed(self, namespace: str, pod: str, container: str) -> str:
        """Why the last stream of a container ended with an error ('' when it did not)."""
        with self._lock:
            topic = self._topics.get((namespace, pod, container))
            return topic.error if topic is not None else ""


def _push(
    loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None], item: str | None
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed
        loop.call_soon_threadsafe(queue.put_nowait, item)
