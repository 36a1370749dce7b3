"""The Jobs view's Starlette application: pages, the JSON API `/api/v1/`, event streams.

Every request passes `Guard` first (security headers on every answer; `Host` checked in
local mode; cross-origin requests refused unless `--cors-origin` names the origin), then
the handler finds its viewer (`_viewer`: start-token cookie locally, bearer token in the
cluster) and asks `Viewer.can` for what it shows or does. POSTs need the session's CSRF
token. Templates autoescape; the page script builds the DOM with `textContent` only.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode

from anyio import to_thread
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devjobs.ui import security, views
from devjobs.ui.access import TokenReviewer, Viewer, self_access_viewer
from devjobs.ui.cluster import KubeError, Store, describe, request_run
from devjobs.ui.logs import LogHub

HERE = Path(__file__).parent
Mode = Literal["local", "cluster"]
HEARTBEAT = 15.0


@dataclass
class Settings:
    mode: Mode
    hosts: tuple[str, ...] = ()
    """Local mode: the `Host` values accepted (the server's own address)."""
    start_token: security.StartToken = field(default_factory=security.StartToken)
    cors_origins: tuple[str, ...] = ()
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    secure_cookies: bool = False
    """Cluster mode behind TLS: cookies get `Secure`."""


class Guard:
    """ASGI middleware: security headers, the Host check (local mode), CORS."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host")
        origin = headers.get("origin")
        extra: list[tuple[bytes, bytes]] = []
        if self.settings.mode == "local" and not security.host_allowed(host, self.settings.hosts):
            await _plain(403, "devjobs ui: this server answers only to its own address")(
                scope, receive, send
            )
            return
        own = [f"{scope.get('scheme', 'http')}://{host}"] if host else []
        if not security.origin_allowed(origin, own, self.settings.cors_origins):
            await _plain(403, "devjobs ui: cross-origin request refused")(scope, receive, send)
            return
        if origin and origin.lower().rstrip("/") in {
            o.lower().rstrip("/") for o in self.settings.cors_origins
        }:
            extra = [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"vary", b"Origin"),
            ]
            if scope["method"] == "OPTIONS":
                preflight = Response(status_code=204)
                preflight.headers["access-control-allow-methods"] = "GET, POST"
                preflight.headers["access-control-allow-headers"] = (
                    "authorization, content-type, x-csrf-token"
                )
                preflight.headers["access-control-max-age"] = "600"
                for k, v in extra:
                    preflight.headers[k.decode()] = v.decode("latin-1")
                await preflight(scope, receive, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {k.lower() for k, _ in raw}
                for k, v in security.SECURITY_HEADERS.items():
                    if k.encode() not in present:
                        raw.append((k.encode(), v.encode()))
                raw.extend(extra)
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _plain(status: int, text: str) -> Response:
    return PlainTextResponse(text + "\n", status_code=status)


class Forbidden(Exception):
    pass


class UI:
    """The handlers, bound to one Store, LogHub and Settings."""

    def __init__(
        self,
        store: Store,
        hub: LogHub,
        settings: Settings,
        reviewer: TokenReviewer | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.settings = settings
        self.reviewer = reviewer
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
        )

    # --- who is asking ----------------------------------------------------------------

    async def viewer(self, request: Request) -> Viewer | Response:
        """The request's viewer, or the answer to give instead (sign in, refused)."""
        api = request.url.path.startswith("/api/")
        if self.settings.mode == "local":
            token = self.settings.start_token
            given = request.query_params.get("token")
            if given is not None:
                if not token.matches(given):
                    return _plain(401, "devjobs ui: wrong token; open the URL devjobs ui printed")
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
                answer = RedirectResponse(target, status_code=303)
                answer.set_cookie(
                    security.SESSION_COOKIE, token.value, httponly=True, samesite="strict",
                    path="/", secure=self.settings.secure_cookies,
                )  # fmt: skip
                return answer
            cookie = request.cookies.get(security.SESSION_COOKIE)
            header = security.bearer(request.headers.get("authorization"))
            credential = cookie if token.matches(cookie) else header
            if not token.matches(credential):
                return _plain(401, "devjobs ui: no token; open the URL devjobs ui printed")
            return self_access_viewer(self.store.kube, security.session_id(token.value))
        assert self.reviewer is not None
        credential = security.bearer(request.headers.get("authorization")) or request.cookies.get(
            security.TOKEN_COOKIE
        )
        if not credential:
            if api:
                return _plain(401, "devjobs ui: send a Kubernetes bearer token")
            return RedirectResponse("/sign-in", status_code=303)
        try:
            found = await to_thread.run_sync(
                self.reviewer.viewer, credential, security.session_id(credential)
            )
        except KubeError as error:
            return _plain(503, f"devjobs ui: cannot review the token: {describe(error)}")
        if found is None:
            if api:
                return _plain(401, "devjobs ui: the token was not accepted")
            answer = RedirectResponse("/sign-in?failed=1", status_code=303)
            answer.delete_cookie(security.TOKEN_COOKIE, path="/")
            return answer
        return found

    def csrf(self, viewer: Viewer) -> str:
        return security.csrf_token(self.settings.secret, viewer.session)

    async def can(self, viewer: Viewer, verb: str, namespace: str) -> bool:
        return bool(await to_thread.run_sync(viewer.can, verb, namespace))

    # --- data ---------------------------------------------------------------------------

    async def visible_environments(self, viewer: Viewer) -> list[dict[str, Any]]:
        envs = self.store.all_environments()
        namespaces = sorted({e["metadata"]["namespace"] for e in envs})
        allowed = {ns for ns in namespaces if await self.can(viewer, "get", ns)}
        runnable = {ns for ns in allowed if await self.can(viewer, "patch", ns)}
        now = datetime.now(UTC)
        found = []
        for env in envs:
            ns = env["metadata"]["namespace"]
            if ns not in allowed:
                continue
            snapshot = self.store.snapshot(env)
            rows = views.job_rows(snapshot, now)
            found.append(views.environment_summary(snapshot, rows, ns in runnable))
        return found

    async def environment_view(
        self, viewer: Viewer, namespace: str, name: str
    ) -> dict[str, Any] | None:
        if not await self.can(viewer, "get", namespace):
            raise Forbidden(namespace)
        env = self.store.environment(namespace, name)
        if env is None:
            return None
        snapshot = self.store.snapshot(env)
        rows = views.job_rows(snapshot, datetime.now(UTC))
        can_run = await self.can(viewer, "patch", namespace)
        return {"environment": views.environment_summary(snapshot, rows, can_run), "jobs": rows}

    async def job_view(
        self, viewer: Viewer, namespace: str, name: str, key: str, run: str | None
    ) -> dict[str, Any] | None:
        if not await self.can(viewer, "get", namespace):
            raise Forbidden(namespace)
        env = self.store.environment(namespace, name)
        if env is None:
            return None
        snapshot = self.store.snapshot(env)
        detail = views.job_detail(snapshot, key, datetime.now(UTC), run)
        if detail is None:
            return None
        detail["canRun"] = await self.can(viewer, "patch", namespace)
        detail["environment"] = {"namespace": namespace, "name": name}
        return detail

    # --- pages ------------------------------------------------------------------------

    def page(self, template: str, viewer: Viewer, status: int = 200, **data: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            viewer=viewer.name, csrf=self.csrf(viewer), mode=self.settings.mode, **data
        )
        return HTMLResponse(html, status_code=status)

    async def index(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        return self.page("index.html", viewer, environments=await self.visible_environments(viewer))

    async def environment_page(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        ns, name = request.path_params["namespace"], request.path_params["name"]
        try:
            data = await self.environment_view(viewer, ns, name)
        except Forbidden:
            return _plain(403, "devjobs ui: you may not see Environments in this namespace")
        if data is None:
            return _plain(404, "devjobs ui: no such Environment")
        return self.page("environment.html", viewer, **data)

    async def job_page(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        p = request.path_params
        key = f"{p['source']}/{p['job']}"
        try:
            detail = await self.job_view(
                viewer, p["namespace"], p["name"], key, request.query_params.get("run")
            )
        except Forbidden:
            return _plain(403, "devjobs ui: you may not see Environments in this namespace")
        if detail is None:
            return _plain(404, "devjobs ui: no such job")
        return self.page("job.html", viewer, job=detail, run=request.query_params.get("run"))

    async def sign_in_page(self, request: Request) -> Response:
        html = self.templates.get_template("signin.html").render(
            failed=bool(request.query_params.get("failed"))
        )
        return HTMLResponse(html)

    async def sign_in(self, request: Request) -> Response:
        if self.settings.mode != "cluster":
            return _plain(404, "devjobs ui: sign-in is for the cluster mode")
        # No session yet, so no CSRF token: the form must come from this very origin.
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.headers.get('host')}"
        if origin is None or origin.lower() != own.lower():
            return _plain(403, "devjobs ui: sign in from this server's own page")
        token = (await _form(request)).get("token", "").strip()
        answer = RedirectResponse("/", status_code=303)
        answer.set_cookie(
            security.TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/",
            secure=self.settings.secure_cookies,
        )  # fmt: skip
        return answer

    # --- the API ------------------------------------------------------------------------

    async def api_session(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        return JSONResponse({"user": viewer.name, "csrfToken": self.csrf(viewer)})

    async def api_environments(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        if _wants_events(request):
            return self.events(request, lambda: self._environments_json(viewer))
        return JSONResponse(await self._environments_json(viewer))

    async def _environments_json(self, viewer: Viewer) -> dict[str, Any]:
        return {"environments": await self.visible_environments(viewer)}

    async def api_environment(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        ns, name = request.path_params["namespace"], request.path_params["name"]
        if not await self.can(viewer, "get", ns):
            return _plain(403, "devjobs ui: forbidden")

        async def current() -> dict[str, Any] | None:
            return await self.environment_view(viewer, ns, name)

        if _wants_events(request):
            return self.events(request, current)
        data = await current()
        return JSONResponse(data) if data is not None else _plain(404, "no such Environment")

    async def api_job(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        p = request.path_params
        if not await self.can(viewer, "get", p["namespace"]):
            return _plain(403, "devjobs ui: forbidden")
        run = request.query_params.get("run")

        async def current() -> dict[str, Any] | None:
            key = f"{p['source']}/{p['job']}"
            return await self.job_view(viewer, p["namespace"], p["name"], key, run)

        if _wants_events(request):
            return self.events(request, current)
        data = await current()
        return JSONResponse(data) if data is not None else _plain(404, "no such job")

    async def api_log(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        p = request.path_params
        ns, name, key = p["namespace"], p["name"], f"{p['source']}/{p['job']}"
        if not await self.can(viewer, "get", ns):
            return _plain(403, "devjobs ui: forbidden")
        run = request.query_params.get("run")
        detail = await self.job_view(viewer, ns, name, key, run)
        if detail is None:
            return _plain(404, "devjobs ui: no such job")
        if _wants_events(request) or request.query_params.get("follow"):
            return EventSourceResponse(
                self._log_events(viewer, ns, name, key, run), ping=int(HEARTBEAT)
            )
        lines: list[str] = []
        if detail["logSource"] == "retained":
            for part in detail["retained"]:
                lines += [f"[{part['container']}] {x}" for x in part["text"].splitlines()]
        elif detail["logSource"] == "live":
            for container in views.log_containers(detail):
                async for line in self.hub.follow(ns, detail["pod"], container):
                    lines.append(f"[{container}] {line}")
                    if len(lines) > 100_000:
                        break
        return PlainTextResponse("\n".join(lines) + ("\n" if lines else ""))

    async def _log_events(
        self, viewer: Viewer, ns: str, name: str, key: str, run: str | None
    ) -> AsyncIterator[dict[str, str]]:
        """`state` (the job's detail, whenever it changes), `container` (a container's
        log starts), `line` ({container, text}), `retained` (the kept record), `end`."""
        out: asyncio.Queue[dict[str, str] | None] = asyncio.Queue()

        async def states() -> None:
            version, last = -1, ""
            while True:
                detail = await self.job_view(viewer, ns, name, key, run)
                text = json.dumps(detail, sort_keys=True)
                if text != last:
                    await out.put({"event": "state", "data": text})
                    last = text
                version = await self.store.changed(version, HEARTBEAT)

        finished = ("Succeeded", "Failed", "Cancelled")

        async def detail_now() -> dict[str, Any]:
            return await self.job_view(viewer, ns, name, key, run) or {}

        async def stream_pod(pod: str, containers: list[str]) -> None:
            for container in containers:
                version = -1
                while True:  # until the container started, the run ended or the pod went
                    detail = await detail_now()
                    here = [c for c in detail.get("containers", []) if c["name"] == container]
                    if (
                        detail.get("pod") != pod
                        or detail.get("state") in finished
                        or not here
                        or here[0]["state"] != "Waiting"
                    ):
                        break
                    version = await self.store.changed(version, HEARTBEAT)
                if detail.get("pod") != pod:
                    return
                await out.put({"event": "container", "data": json.dumps({"name": container})})
                async for line in self.hub.follow(ns, pod, container):
                    await out.put({"event": "line", "data": json.dumps([container, line])})

        async def logs() -> None:
            streamed: set[str] = set()
            version = -1
            while True:
                detail = await detail_now()
                pod = str(detail.get("pod") or "")
                if pod and pod not in streamed and detail.get("logSource") == "live":
                    streamed.add(pod)
                    await stream_pod(pod, views.log_containers(detail))
                    continue
                if not streamed and detail.get("logSource") == "retained":
                    await out.put({"event": "retained", "data": json.dumps(detail["retained"])})
                    break
                if streamed and detail.get("state") in finished:
                    break
                if not detail:
                    break
                version = await self.store.changed(version, HEARTBEAT)
            await out.put({"event": "end", "data": "{}"})

        tasks = [asyncio.create_task(states()), asyncio.create_task(logs())]
        try:
            while True:
                item = await out.get()
                if item is None:
                    return
                yield item
        finally:
            for task in tasks:
                task.cancel()

    def events(
        self, request: Request, compute: Callable[[], Awaitable[dict[str, Any] | None]]
    ) -> Response:
        """An event stream of `compute()`'s JSON, sent again whenever it changes."""

        async def stream() -> AsyncIterator[dict[str, str]]:
            version, last = -1, ""
            while True:
                data = await compute()
                text = json.dumps(data, sort_keys=True)
                if text != last:
                    yield {"event": "update", "data": text}
                    last = text
                version = await self.store.changed(version, HEARTBEAT)

        return EventSourceResponse(stream(), ping=int(HEARTBEAT))

    async def api_run(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        if isinstance(viewer, Response):
            return viewer
        given = request.headers.get(security.CSRF_HEADER)
        if given is None and "form" in request.headers.get("content-type", ""):
            given = (await _form(request)).get(security.CSRF_FIELD) or None
        if not security.csrf_valid(self.settings.secret, viewer.session, given):
            return _plain(403, "devjobs ui: missing or wrong CSRF token")
        p = request.path_params
        ns, name, key = p["namespace"], p["name"], f"{p['source']}/{p['job']}"
        if not await self.can(viewer, "patch", ns):
            return _plain(403, "devjobs ui: you may not run jobs in this namespace")
        if self.store.environment(ns, name) is None:
            return _plain(404, "devjobs ui: no such Environment")
        try:
            await to_thread.run_sync(lambda: request_run(viewer.writer(), ns, name, [key]))
        except KubeError as error:
            status = error.status if error.status in (403, 404, 409, 422) else 502
            return _plain(status, f"devjobs ui: {describe(error)}")
        return JSONResponse({"requested": [key]}, status_code=202)


async def _form(request: Request, limit: int = 64 * 1024) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body's fields (first value of each)."""
    if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
        return {}
    body = await request.body()
    if len(body) > limit:
        return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


def _wants_events(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def create_app(
    store: Store, hub: LogHub, settings: Settings, reviewer: TokenReviewer | None = None
) -> Starlette:
    ui = UI(store, hub, settings, reviewer)
    env_path = "/environments/{namespace}/{name}"
    api = "/api/v1"
    routes = [
        Route("/", ui.index),
        Route(env_path, ui.environment_page),
        Route(env_path + "/jobs/{source}/{job:path}", ui.job_page),
        Route("/sign-in", ui.sign_in_page, methods=["GET"]),
        Route("/sign-in", ui.sign_in, methods=["POST"]),
        Route(f"{api}/session", ui.api_session),
        Route(f"{api}/environments", ui.api_environments),
        Route(f"{api}{env_path}", ui.api_environment),
        Route(f"{api}{env_path}/jobs/{{source}}/{{job:path}}/log", ui.api_log),
        Route(f"{api}{env_path}/jobs/{{source}}/{{job:path}}/run", ui.api_run, methods=["POST"]),
        Route(f"{api}{env_path}/jobs/{{source}}/{{job:path}}", ui.api_job),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(Guard, settings=settings)
    app.state.ui = ui
    return app
