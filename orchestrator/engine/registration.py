"""Validating what an app declares at registration: functions, workflows (their graph),
triggers, crons, cancel rules, timeouts, retention, flow control. Bad declarations fail the
registration with a clear error, never a run later."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import math
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from orchestrator.engine import cron
from orchestrator.errors import Invalid
from orchestrator.store import CronInsert
from sdk import flow
from sdk import protocol as p
from sdk.function import NAME_RE, Retry

KINDS = ("task", "workflow")


def _local_address(host: str) -> bool:
    """Whether ``host`` (an IP literal) is loopback, private or link-local."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_private or ip.is_link_local


async def check_app_url(url: str, *, allow_insecure: bool) -> None:
    """Refuse a plain-http app URL unless it stays on this machine or a private network.

    Requests and answers are signed, not encrypted: over plain http anyone on the path
    reads them (inputs, step outputs) and can capture a request to replay it (see
    docs/protocol.md, threat model). https is always accepted; http only to loopback,
    private (RFC 1918, RFC 4193) or link-local addresses, a name under ``localhost``, or
    a name all of whose addresses are such, unless ``allow_insecure``
    (``--allow-insecure-apps`` / ``DURABLE_ALLOW_INSECURE_APP_URLS=1``).
    """
    parts = urlsplit(url)
    if parts.scheme == "https" or allow_insecure:
        return
    host = (parts.hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost") or _local_address(host):
        return
    if host:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, parts.port or 80, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            infos = []
        addrs = {str(i[4][0]) for i in infos}
        if addrs and all(_local_address(a) for a in addrs):
            return
    raise Invalid(
        f"{url} is plain http to a public address: requests would cross the network "
        "unencrypted. Use https, or allow it explicitly (--allow-insecure-apps, "
        "DURABLE_ALLOW_INSECURE_APP_URLS=1)", "url")


def _fail(message: str) -> Invalid:
    return Invalid(message, "functions")


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise _fail(f"invalid {what} {value!r}")
    return value


def _seconds(c: Mapping[str, Any], key: str, where: str) -> None:
    v = c.get(key)
    if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)
                          or not math.isfinite(v) or v <= 0):
        raise _fail(f"{where}: {key} must be a positive number of seconds")


def _retention(c: Mapping[str, Any], where: str) -> None:
    """``retention``: absent, null, or seconds within the protocol's bounds."""
    v = c.get("retention")
    if v is not None and (not isinstance(v, int | float) or isinstance(v, bool)
                          or not math.isfinite(v)
                          or not p.MIN_RETENTION_S <= v <= p.MAX_RETENTION_S):
        raise _fail(f"{where}: retention must be a number of seconds within "
                    f"[{p.MIN_RETENTION_S:g}, {p.MAX_RETENTION_S:g}] (a second to ten "
                    f"years)")


def _flow(c: Mapping[str, Any], where: str, *, task: bool = False) -> None:
    """Flow control (``sdk.flow``): checked as the SDK checks it. A workflow's task may
    declare only ``concurrency``; the other controls apply to the workflow's runs."""
    if task:
        extra = [k for k in flow.FLOW_KEYS if k != "concurrency" and c.get(k) is not None]
        if extra:
            raise _fail(f"{where}: a task declares only concurrency, not {', '.join(extra)}")
    try:
        fc = flow.from_wire(c, where)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if fc.batch is not None and not c.get("triggers"):
        raise _fail(f"{where}: batch gathers events: it needs triggers")


def _list(c: Mapping[str, Any], key: str, where: str) -> list[Any]:
    if key not in c:
        return []
    v = c[key]
    if not isinstance(v, list):
        raise _fail(f"{where}: {key} must be a list")
    return v


def _retry(c: Mapping[str, Any], where: str) -> None:
    try:
        Retry.from_wire(c.get("retry"))
    except (TypeError, ValueError) as exc:
        raise _fail(f"{where} has an invalid retry policy: {exc}") from None


def check_graph(name: str, tasks: Any) -> None:
    """Unknown parents, duplicate names and cycles are registration errors."""
    if not isinstance(tasks, list) or not tasks:
        raise _fail(f"workflow {name!r} declares no tasks")
    names: set[str] = set()
    for t in tasks:
        tn = _name(t.get("name") if isinstance(t, Mapping) else None,
                   f"task name in workflow {name!r}")
        if tn in names:
            raise _fail(f"workflow {name!r} declares task {tn!r} twice")
        names.add(tn)
    parents: dict[str, list[str]] = {}
    for t in tasks:
        where = f"workflow {name!r}, task {t['name']!r}"
        ps = _list(t, "parents", where)
        for q in ps:
            if not isinstance(q, str) or q not in names:
                raise _fail(f"{where}: unknown parent {q!r}")
        parents[t["name"]] = list(dict.fromkeys(ps))
        _retry(t, where)
        _seconds(t, "timeout", where)
        _seconds(t, "queue_timeout", where)
        _flow(t, where, task=True)
    # Kahn's algorithm: what cannot be ordered is on (or behind) a cycle
    waiting = {n: len(ps) for n, ps in parents.items()}
    children: dict[str, list[str]] = {n: [] for n in parents}
    for n, ps in parents.items():
        for q in ps:
            children[q].append(n)
    ready = [n for n, k in waiting.items() if k == 0]
    while ready:
        n = ready.pop()
        for ch in children[n]:
            waiting[ch] -= 1
            if waiting[ch] == 0:
                ready.append(ch)
    stuck = {n for n, k in waiting.items() if k > 0}
    if stuck:
        raise _fail(f"workflow {name!r} has a cycle: {' -> '.join(_cycle(stuck, parents))}")


def _cycle(stuck: set[str], parents: dict[str, list[str]]) -> list[str]:
    """One cycle among ``stuck`` tasks, as a path (walk parents until a task repeats)."""
    n = min(stuck)
    path: list[str] = []
    while n not in path:
        path.append(n)
        n = next(q for q in parents[n] if q in stuck)
    return [*path[path.index(n):], n][::-1]


def code_crons(name: str, specs: Any) -> list[CronInsert]:
    """Rows for the crons a function declares in code (ids stable across re-syncs)."""
    if not isinstance(specs, list):
        raise _fail(f"function {name!r}: crons must be a list")
    rows: list[CronInsert] = []
    for s in specs:
        if not isinstance(s, Mapping) or not isinstance(s.get("expression"), str):
            raise _fail(f"function {name!r}: a cron needs an expression")
        tz = s.get("timezone") or "UTC"
        try:
            cron.parse(s["expression"], tz)
        except cron.CronError as exc:
            raise _fail(f"function {name!r}: {exc}") from None
        input_json = p.dumps(s.get("input")).decode()
        canon = json.dumps(s.get("input"), sort_keys=True)
        digest = hashlib.sha256(f"{s['expression']}|{tz}|{canon}".encode()).hexdigest()
        if any(r["id"] == f"{name}:{digest[:12]}" for r in rows):
            continue  # declared twice: one cron
        rows.append({"id": f"{name}:{digest[:12]}", "function": name,
                     "expression": s["expression"], "timezone": tz,
                     "input_json": input_json, "source": "code"})
    return rows


def validate_functions(configs: Any) -> tuple[list[dict[str, Any]], list[CronInsert]]:
    """The app's function configs, checked; and the crons they declare."""
    if not isinstance(configs, list):
        raise Invalid("the app's introspection has no function list", "url")
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    crons: list[CronInsert] = []
    for c in configs:
        if not isinstance(c, Mapping):
            raise _fail("a function declaration must be an object")
        name = _name(c.get("name"), "function name")
        if name in seen:
            raise _fail(f"the app declares function {name!r} twice")
        seen.add(name)
        kind = c.get("kind", "task")
        if kind not in KINDS:
            raise _fail(f"function {name!r} has an unknown kind {kind!r}")
        for t in _list(c, "triggers", f"function {name!r}"):
            _name(t.get("event") if isinstance(t, Mapping) else None,
                  f"trigger event of {name!r}")
        _retry(c, f"function {name!r}")
        _seconds(c, "timeout", f"function {name!r}")
        _seconds(c, "queue_timeout", f"function {name!r}")
        _retention(c, f"function {name!r}")
        _flow(c, f"function {name!r}")
        for rule in _list(c, "cancel_on", f"function {name!r}"):
            match = rule.get("match", {}) if isinstance(rule, Mapping) else None
            if not isinstance(match, Mapping) or not all(
                isinstance(k, str) and k and "," not in k and isinstance(v, str) and v
                for k, v in match.items()
            ):
                raise _fail(f"function {name!r}: cancel_on rules are {{event, match}} with "
                            f"match mapping event paths to run paths (strings)")
            _name(rule.get("event"), f"cancel_on event of {name!r}")
        if kind == "workflow":
            check_graph(name, c.get("tasks"))
            fail = c.get("on_failure")
            if fail is not None:
                fname = _name(fail.get("name") if isinstance(fail, Mapping) else None,
                              f"on_failure task of {name!r}")
                if fname in {t["name"] for t in c["tasks"]}:
                    raise _fail(f"workflow {name!r}: on_failure task {fname!r} is also a task")
                _retry(fail, f"workflow {name!r}, on_failure task {fname!r}")
                _seconds(fail, "timeout", f"workflow {name!r}, on_failure task {fname!r}")
        crons += code_crons(name, _list(c, "crons", f"function {name!r}"))
        out.append(dict(c))
    return out, crons
