"""The dashboard's pages and actions (docs/dashboard.md). Every page needs a signed-in
session whose key is still valid; every POST needs the session's CSRF token; actions need
the ``admin`` scope (a ``read`` key sees the pages without their buttons)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.dashboard.flow import describe, priority_label, task_concurrency
from orchestrator.dashboard.session import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    Session,
    Sessions,
    derive_secret,
)
from orchestrator.engine.control import REPLAYABLE
from orchestrator.engine.engine import Engine, RunFilter
from orchestrator.engine.keys import Grant
from orchestrator.errors import ApiError, NotFound
from sdk import protocol as p

HERE = Path(__file__).parent
STATUSES = tuple(s.value for s in p.RunStatus)
PAGE = 50
#: The longest search (a run or event id, as the API takes them).
MAX_SEARCH = 256

Handler = Callable[[Request, "Ctx"], Awaitable[Response]]


class Ctx:
    """One signed-in request: its session and what its key may do."""

    def __init__(self, session: Session, grant: Grant) -> None:
        self.session = session
        self.grant = grant
        self.admin = grant.allows("admin")


MAX_FORM = 256 * 1024


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form's fields (the first value of each), at most ``MAX_FORM`` bytes;
    read once per request (kept in its state)."""
    cached = request.state._state.get("dash_form")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise ApiError(f"the form is larger than {MAX_FORM} bytes", "body")
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                           keep_blank_values=True).items()}
    request.state.dash_form = fields
    return fields


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _epoch(ts: float | None) -> str:
    """Epoch seconds as the API's ISO-8601 UTC time ('—' for none)."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(raw: str | None, field: str) -> float | None:
    if not raw:
        return None
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ApiError(f"{field}: not a date and time (YYYY-MM-DDTHH:MM)", field) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _searchable(text: str) -> bool:
    """Whether ``text`` could be a run or an event id (what the store can look up)."""
    return len(text) <= MAX_SEARCH and "\x00" not in text


def _stamp(iso: str | None) -> float | None:
    return None if not iso else datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _duration(start: str | None, end: str | None) -> str:
    a, b = _stamp(start), _stamp(end)
    if a is None:
        return ""
    secs = (b if b is not None else time.time()) - a
    return f"{secs * 1000:.0f} ms" if secs < 1 else f"{secs:.2f} s"


class Dashboard:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        s = engine.settings
        self.sessions = Sessions(derive_secret(s.dashboard_secret, s.signing_key),
                                 s.dashboard_session_max_age)
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(default=True), auto_reload=False)
        self.env.filters["pretty"] = _pretty
        self.env.filters["epoch"] = _epoch
        self.env.globals["duration"] = _duration
        self.env.globals["STATUSES"] = STATUSES
        self.env.globals["REPLAYABLE"] = REPLAYABLE

    # -- plumbing ---------------------------------------------------------------------

    def render(self, request: Request, name: str, ctx: Ctx | None, status: int = 200,
               **values: Any) -> HTMLResponse:
        html = self.env.get_template(name).render(
            request=request, ctx=ctx, csrf=ctx.session.csrf if ctx else "",
            csrf_field=CSRF_FIELD, flash=request.query_params.get("flash"),
            path=request.url.path, **values)
        return HTMLResponse(html, status_code=status, headers={
            "cache-control": "no-store", "x-frame-options": "DENY",
            "content-security-policy": "default-src 'self'; img-src 'self' data:; "
                                       "style-src 'self'; frame-ancestors 'none'"})

    def page(self, handler: Handler, *, action: bool = False) -> Callable[[Request],
                                                                          Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            session = self.sessions.read(request.cookies.get(COOKIE))
            grant = None if session is None else await self.engine.keys.grant(session.key)
            if session is None or grant is None or not grant.allows("read"):
                if request.method != "GET":
                    return self.render(request, "error.html", None, 401,
                                       message="Your session has ended: sign in again.")
                nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                resp: Response = RedirectResponse(f"/login?{urlencode({'next': nxt})}", 303)
                resp.delete_cookie(COOKIE)
                return resp
            ctx = Ctx(session, grant)
            if request.method == "POST":
                form = await _form(request)
                token = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
                if not Sessions.csrf_ok(session, token):
                    return self.render(request, "error.html", ctx, 403,
                                       message="The form's CSRF token is missing or wrong: "
                                               "reload the page and try again.")
                if action and not ctx.admin:
                    return self.render(request, "error.html", ctx, 403,
                                       message="This key may only read: actions need an "
                                               "admin key.")
            try:
                return await handler(request, ctx)
            except ApiError as exc:
                # the API's status (404, 409, 422, a 503 while the database is away)
                return self.render(request, "error.html", ctx, exc.status,
                                   message=exc.message, field=exc.field)
        return endpoint

    @staticmethod
    def back(url: str, flash: str) -> RedirectResponse:
        sep = "&" if "?" in url else "?"
        return RedirectResponse(f"{url}{sep}{urlencode({'flash': flash})}", 303)

    # -- sign in / out ----------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        return self.render(request, "login.html", None, next=request.query_params.get("next"))

    async def login(self, request: Request) -> Response:
        form = await _form(request)
        key = form.get("api_key", "")
        nxt = form.get("next", "")
        target = nxt if nxt.startswith("/") and not nxt.startswith("//") else "/"
        grant = await self.engine.keys.grant(key) if key else None
        if grant is None or not grant.allows("read"):
            why = ("This key may only send events: the dashboard needs a read or admin key."
                   if grant is not None else "Unknown or revoked API key.")
            return self.render(request, "login.html", None, 401, error=why, next=target)
        _, cookie = self.sessions.new(key)
        resp = RedirectResponse(target, 303)
        resp.set_cookie(COOKIE, cookie, max_age=self.sessions.max_age, httponly=True,
                        samesite="lax", secure=request.url.scheme == "https", path="/")
        return resp

    async def logout(self, request: Request, ctx: Ctx) -> Response:
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # -- runs -------------------------------------------------------------------------

    async def runs(self, request: Request, ctx: Ctx) -> Response:
        """The runs list: filtered by function, status and creation time in the store
        (each page holds only matching runs); the search box takes a run id (jump to the
        run) or an event id (the runs it started); a count per status for the function
        and time range."""
        q = request.query_params
        search = (q.get("q") or "").strip()
        event_id = None
        if search:
            if not _searchable(search):
                raise ApiError(f"q: at most {MAX_SEARCH} characters, no NUL", "q")
            try:
                await self.engine.get_run(search)
                return RedirectResponse(f"/runs/{search}", 303)
            except NotFound:
                event_id = search
        function = q.get("function") or None
        status = q.get("status") or None
        if status is not None and status not in STATUSES:
            raise ApiError(f"status: one of {', '.join(STATUSES)}", "status")
        since = _parse_time(q.get("since"), "since")
        until = _parse_time(q.get("until"), "until")
        cursor = q.get("cursor") or None
        try:
            page = await self.engine.list_runs(function, status, PAGE, cursor, since=since,
                                               until=until, event_id=event_id)
        except NotFound as exc:
            if exc.field != "event_id":
                raise
            page, event_id = {"runs": [], "next_cursor": None}, None
        counts = await self.engine.count_runs(function, since, until)
        functions = sorted({f["name"] for f in await self.engine.list_functions()})
        params = {k: v for k, v in q.items() if k not in ("cursor", "flash") and v}
        nxt = None
        if page["next_cursor"]:
            nxt = "/?" + urlencode({**params, "cursor": page["next_cursor"]})
        scope = {k: v for k, v in params.items() if k in ("function", "since", "until")}
        return self.render(request, "runs.html", ctx, runs=page["runs"], functions=functions,
                           f=params, next_page=nxt, searched=search if event_id is None
                           else "", event=event_id, counts=counts, scope=scope)

    async def _run_values(self, run_id: str) -> dict[str, Any]:
        run = await self.engine.get_run(run_id)
        return {"run": run, "live": run["status"] not in p.TERMINAL,
                "priority": priority_label(run),
                "nodes": json.dumps([{"id": t["name"], "status": t["status"],
                                      "run": t["id"]} for t in run.get("tasks", [])]),
                "graph_edges": await self._edges(run)}

    async def run(self, request: Request, ctx: Ctx) -> Response:
        values = await self._run_values(request.path_params["id"])
        return self.render(request, "run.html", ctx, **values)

    async def run_live(self, request: Request, ctx: Ctx) -> Response:
        values = await self._run_values(request.path_params["id"])
        resp = self.render(request, "run_body.html", ctx, **values)
        if not values["live"]:
            resp.status_code = 286  # htmx: swap this, then stop polling
        return resp

    async def _edges(self, run: Any) -> str:
        """The workflow's edges (parent -> task), from its declared configuration (the
        registry's, in memory: the live fragment asks every second)."""
        info = await self.engine.registry.get(run["function"]) if run.get("tasks") else None
        if info is None:
            return "[]"
        return json.dumps([[parent, t["name"]] for t in info.config.get("tasks", [])
                           for parent in t.get("parents", [])])

    async def cancel(self, request: Request, ctx: Ctx) -> Response:
        rid = request.path_params["id"]
        res = await self.engine.cancel_run(rid, "cancelled from the dashboard")
        return self.back(f"/runs/{rid}", f"cancelled {len(res['cancelled'])} run(s)"
                         if res["cancelled"] else "the run had already ended")

    async def replay(self, request: Request, ctx: Ctx) -> Response:
        rid = request.path_params["id"]
        form = await _form(request)
        start = form.get("from", "failed_step")
        if start not in ("failed_step", "start"):
            raise ApiError("from: 'failed_step' or 'start'", "from")
        raw = form.get("input")
        new_input: Any = ...
        if start == "start" and raw and raw.strip():
            try:
                new_input = json.loads(raw)
            except ValueError as exc:
                raise ApiError(f"input: not JSON ({exc})", "input") from exc
        await self.engine.replay_run(rid, str(start), new_input)
        return self.back(f"/runs/{rid}", f"replaying from {start}")

    async def bulk(self, request: Request, ctx: Ctx) -> Response:
        form = await _form(request)
        what = form.get("action")
        if what not in ("cancel", "replay"):
            raise ApiError("action: 'cancel' or 'replay'", "action")
        if form.get("confirm") != "yes":
            raise ApiError("confirm: tick the confirmation box", "confirm")
        status = form.get("status") or None
        if status is not None and status not in STATUSES:
            raise ApiError(f"status: one of {', '.join(STATUSES)}", "status")
        f = RunFilter(function=form.get("function") or None,
                      statuses=(status,) if status else (),
                      since=_parse_time(form.get("since"), "since"),
                      until=_parse_time(form.get("until"), "until"))
        if what == "cancel":
            n = len((await self.engine.cancel_runs(f, "bulk cancel from the dashboard"))
                    ["cancelled"])
            return self.back("/", f"cancelled {n} run(s)")
        n = len((await self.engine.replay_runs(f))["replayed"])
        return self.back("/", f"replaying {n} run(s)")

    # -- functions, apps, events ------------------------------------------------------

    async def functions(self, request: Request, ctx: Ctx) -> Response:
        fns = await self.engine.list_functions()
        crons = await self.engine.list_crons(None)
        return self.render(request, "functions.html", ctx, functions=fns, crons=crons)

    async def function(self, request: Request, ctx: Ctx) -> Response:
        fn = await self.engine.get_function(request.path_params["name"])
        return self.render(request, "function.html", ctx, fn=fn, flow=describe(fn),
                           task_flow={t["name"]: task_concurrency(t)
                                      for t in fn.get("tasks") or []})

    async def trigger(self, request: Request, ctx: Ctx) -> Response:
        form = await _form(request)
        fn = form.get("function", "")
        if not fn:
            raise ApiError("function: required", "function")
        raw = form.get("input", "").strip()
        try:
            value = json.loads(raw) if raw else None
        except ValueError as exc:
            raise ApiError(f"input: not JSON ({exc})", "input") from exc
        res = await self.engine.start_run(fn, value)
        return RedirectResponse(f"/runs/{res['id']}", 303)

    async def apps(self, request: Request, ctx: Ctx) -> Response:
        return self.render(request, "apps.html", ctx, apps=await self.engine.list_apps())

    async def sync(self, request: Request, ctx: Ctx) -> Response:
        form = await _form(request)
        url = form.get("url", "")
        if not url:
            raise ApiError("url: required", "url")
        res = await self.engine.register_app(url)
        return self.back("/apps", f"synced {res['id']}: {len(res['functions'])} function(s)")

    async def _events_values(self, request: Request) -> dict[str, Any]:
        """The events list: newest first, ``PAGE`` a page, filtered by name."""
        q = request.query_params
        name = (q.get("name") or "").strip() or None
        page = await self.engine.list_events(name, PAGE, q.get("cursor") or None)
        nxt = None
        if page["next_cursor"]:
            nxt = "/events?" + urlencode({**({"name": name} if name else {}),
                                          "cursor": page["next_cursor"]})
        return {"events": page["events"], "event_name": name or "", "next_page": nxt}

    async def events(self, request: Request, ctx: Ctx) -> Response:
        return self.render(request, "events.html", ctx, sent=None,
                           **await self._events_values(request))

    async def event(self, request: Request, ctx: Ctx) -> Response:
        ev = await self.engine.get_event(request.path_params["id"])
        return self.render(request, "event.html", ctx, event=ev)

    async def send_event(self, request: Request, ctx: Ctx) -> Response:
        form = await _form(request)
        name = form.get("name", "").strip()
        if not name:
            raise ApiError("name: required", "name")
        raw = form.get("data", "").strip()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError as exc:
            raise ApiError(f"data: not JSON ({exc})", "data") from exc
        if not isinstance(data, dict):
            raise ApiError("data: a JSON object", "data")
        res = await self.engine.send_events([{"name": name, "data": data}])
        return self.render(request, "events.html", ctx, sent={
            "id": res["ids"][0], "name": name, "runs": res["runs"][0]},
            **await self._events_values(request))

    # -- schedules and crons ----------------------------------------------------------

    async def schedules(self, request: Request, ctx: Ctx) -> Response:
        return self.render(request, "schedules.html", ctx,
                           crons=await self.engine.list_crons(None),
                           schedules=await self.engine.list_schedules(None, 200))

    async def delete_cron(self, request: Request, ctx: Ctx) -> Response:
        await self.engine.delete_cron(request.path_params["id"])
        return self.back("/schedules", "cron deleted")

    async def pause_cron(self, request: Request, ctx: Ctx) -> Response:
        await self.engine.pause_cron(request.path_params["id"])
        return self.back("/schedules", "cron paused")

    async def resume_cron(self, request: Request, ctx: Ctx) -> Response:
        await self.engine.resume_cron(request.path_params["id"])
        return self.back("/schedules", "cron resumed")

    async def delete_schedule(self, request: Request, ctx: Ctx) -> Response:
        await self.engine.delete_schedule(request.path_params["id"])
        return self.back("/schedules", "schedule deleted")

    # -- keys and webhooks ------------------------------------------------------------

    async def keys(self, request: Request, ctx: Ctx) -> Response:
        return self.render(request, "keys.html", ctx, keys=await self.engine.list_keys(),
                           webhooks=await self.engine.list_webhooks(), created=None)

    async def create_key(self, request: Request, ctx: Ctx) -> Response:
        form = await _form(request)
        name = form.get("name", "").strip()
        scope = form.get("scope") or "read"
        if not name:
            raise ApiError("name: required", "name")
        if scope not in ("admin", "read", "events"):
            raise ApiError("scope: admin, read or events", "scope")
        created = await self.engine.create_key(name, [scope])  # type: ignore[list-item]
        return self.render(request, "keys.html", ctx, keys=await self.engine.list_keys(),
                           webhooks=await self.engine.list_webhooks(), created=created)

    async def revoke_key(self, request: Request, ctx: Ctx) -> Response:
        await self.engine.revoke_key(request.path_params["id"])
        return self.back("/keys", "key revoked")

    # -- the app ----------------------------------------------------------------------

    def routes(self) -> list[Route | Mount]:
        pg = self.page

        def act(h: Handler) -> Callable[[Request], Awaitable[Response]]:
            return self.page(h, action=True)

        return [
            Route("/login", self.login_page, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", pg(self.logout), methods=["POST"]),
            Route("/", pg(self.runs), methods=["GET"]),
            Route("/runs/bulk", act(self.bulk), methods=["POST"]),
            Route("/runs/{id}", pg(self.run), methods=["GET"]),
            Route("/runs/{id}/live", pg(self.run_live), methods=["GET"]),
            Route("/runs/{id}/cancel", act(self.cancel), methods=["POST"]),
            Route("/runs/{id}/replay", act(self.replay), methods=["POST"]),
            Route("/functions", pg(self.functions), methods=["GET"]),
            Route("/functions/trigger", act(self.trigger), methods=["POST"]),
            Route("/functions/{name}", pg(self.function), methods=["GET"]),
            Route("/apps", pg(self.apps), methods=["GET"]),
            Route("/apps/sync", act(self.sync), methods=["POST"]),
            Route("/events", pg(self.events), methods=["GET"]),
            Route("/events/send", act(self.send_event), methods=["POST"]),
            Route("/events/{id}", pg(self.event), methods=["GET"]),
            Route("/schedules", pg(self.schedules), methods=["GET"]),
            Route("/crons/{id}/delete", act(self.delete_cron), methods=["POST"]),
            Route("/crons/{id}/pause", act(self.pause_cron), methods=["POST"]),
            Route("/crons/{id}/resume", act(self.resume_cron), methods=["POST"]),
            Route("/schedules/{id}/delete", act(self.delete_schedule), methods=["POST"]),
            Route("/keys", pg(self.keys), methods=["GET"]),
            Route("/keys/create", act(self.create_key), methods=["POST"]),
            Route("/keys/{id}/revoke", act(self.revoke_key), methods=["POST"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]


#: Paths the orchestrator's own app serves (the REST API, webhooks, probes, metrics).
NOT_DASHBOARD = ("/api/", "/hooks/")
SERVICE_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api"})


class DashboardPaths:
    """ASGI middleware sending every request outside the API's paths to the dashboard."""

    def __init__(self, app: ASGIApp, dashboard: ASGIApp) -> None:
        self.app = app
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and not path.startswith(NOT_DASHBOARD) \
                and path not in SERVICE_PATHS:
            await self.dashboard(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_dashboard(engine: Engine) -> Starlette:
    return Starlette(routes=Dashboard(engine).routes())
