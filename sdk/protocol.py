"""The wire protocol between the orchestrator and an app: one module, shared.

Both sides import this module (the orchestrator depends on it; it never imports the
orchestrator). It holds the protocol version, header names, message kinds, memo and op
shapes, size limits, JSON encoding and the HMAC signing of every message.

Messages are JSON objects. The orchestrator POSTs a *request* to the app's endpoint and
the app answers in the HTTP response body. Both bodies are signed: see ``Signer``.
The full contract is described in ``docs/protocol.md``.

Every message and its parts are ``TypedDict`` types (plain JSON dicts at run time, so
they cost nothing to build, encode or decode: ``bench/wire.py``), each with one builder
(``memo_entry``, ``sleep_op``, ``answer_yield`` ...) and, for what arrives over the wire,
one parser (``parse_request``, ``parse_answer``, ``parse_memo_entry`` ...) that checks
the shape, raises ``ProtocolError`` and returns the same dict, typed. No other module
spells a message by hand.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Final, Literal, NotRequired, TypeAlias, TypedDict, cast

from itsdangerous import Signer as _ItsSigner
from itsdangerous.signer import HMACAlgorithm

VERSION: Final = 1

# -- headers ------------------------------------------------------------------------------
H_SIGNATURE: Final = "x-durable-signature"
H_TIMESTAMP: Final = "x-durable-timestamp"
H_VERSION: Final = "x-durable-protocol"

# -- limits (documented in docs/protocol.md) ----------------------------------------------
MAX_STEP_OUTPUT_BYTES: Final = 1 * 1024 * 1024
"""A step's (or a run's) JSON-encoded output above this fails that step (run)."""
MAX_MEMO_BYTES: Final = 16 * 1024 * 1024
"""The memo of one run (all recorded outputs together) may not grow past this."""
MAX_EVENT_BYTES: Final = 256 * 1024
#: How deep a JSON value (an input, event data, a step's output) may nest: ``{}`` and ``[]``
#: are depth 1. The orchestrator's REST API refuses deeper values (422).
MAX_JSON_DEPTH: Final = 64
"""One event's JSON encoding."""
MAX_REQUEST_BYTES: Final = 2 * MAX_MEMO_BYTES
"""A request above this (a memo grown past its limit) fails the run instead of being sent."""
MAX_ANSWER_BYTES: Final = 32 * 1024 * 1024
"""An answer body above this is refused by the orchestrator."""
MIN_RETENTION_S: Final = 1.0
MAX_RETENTION_S: Final = 3650 * 86400.0
"""Bounds of a function's ``retention`` (seconds an ended run is kept before it is
deleted): a second to ten years."""
MAX_LOOKBACK_S: Final = 86400.0
"""The longest ``lookback`` of a ``wait_for_event``: an event received up to this many
seconds before the wait was recorded may still satisfy it (docs/flow-control.md)."""
MAX_CLOCK_SKEW_S: Final = 60.0
"""Messages whose signed timestamp is further than this from now are refused. It bounds
the window in which a captured request can be replayed (docs/protocol.md, threat model):
the orchestrator signs every request when it sends it (a retry signs afresh), so only
clock skew and one request's time in transit need to fit in it."""

_TIMESTAMP_RE: Final = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE_RE: Final = re.compile(r"^[A-Za-z0-9_\-]{16,128}$")


EVENT_NAME_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")
"""Names of functions, tasks and events."""


class Kind(StrEnum):
    """What a request asks of the app."""

    INVOKE = "invoke"
    INTROSPECT = "introspect"


class Status(StrEnum):
    """How an invoke answer ends the call."""

    COMPLETE = "complete"
    YIELD = "yield"
    ERROR = "error"


class MemoKind(StrEnum):
    """What a memo entry records."""

    STEP = "step"  # step.run: output, or final error; status "retrying" while retried
    SLEEP = "sleep"  # a sleep: its output is the time it ends (epoch seconds)
    WAIT = "wait"  # wait_for_event: the event, or null on timeout
    SPAWN = "spawn"  # children started without waiting: their run ids
    CHILDREN = "children"  # children waited for: [{run_id, status, output|error}]
    SEND_EVENT = "send_event"  # events sent: their ids


class StepStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"


class Op(StrEnum):
    """The one blocking operation a ``yield`` answer ends with."""

    SLEEP = "sleep"  # {id, seq, name, until}
    WAIT_EVENT = "wait_event"  # {id, seq, name, event, match, timeout_at}
    SPAWN = "spawn"  # {id, seq, name, children: [{function, input}], wait}
    RESUME = "resume"  # {at}: call again at ``at`` (time budget spent, step retry)


class ErrorCode(StrEnum):
    """Error types the SDK reports that the orchestrator understands."""

    NON_DETERMINISM = "NonDeterminismError"
    INPUT_VALIDATION = "InputValidationError"
    FUNCTION_NOT_FOUND = "FunctionNotFound"
    OUTPUT_TOO_LARGE = "OutputTooLargeError"
    STEP_FAILED = "StepError"


class RunStatus(StrEnum):
    """A run's status, as the REST API reports it."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    SKIPPED = "skipped"  # a workflow task whose condition said so


TERMINAL: Final = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED,
                             RunStatus.TIMED_OUT, RunStatus.SKIPPED})
"""Statuses a run never leaves (except by an explicit replay)."""


class ProtocolError(ValueError):
    """A message does not follow this protocol."""


# -- JSON -----------------------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    """Encode ``value`` as compact JSON bytes (raises TypeError/ValueError if not JSON)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def loads(data: bytes | str) -> Any:
    return json.loads(data)


def dumps_value(value: Any) -> bytes:
    """``dumps`` for a value that is stored or sent on (an input, a step's or run's output,
    event data, child inputs): also ValueError when it nests deeper than MAX_JSON_DEPTH,
    which the orchestrator's REST API would refuse."""
    try:
        data = dumps(value)
    except RecursionError:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels") from None
    if data.count(b"[") + data.count(b"{") > MAX_JSON_DEPTH:  # cheap: deep is possible
        problem = json_problem(value)
        if problem is not None:
            raise ValueError(problem)
    return data


def json_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why ``value`` is not a JSON value the orchestrator accepts (nests deeper than
    ``max_depth``, or holds a number that is not finite), or None if it is one."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            items: Any = v.values()
        elif isinstance(v, list):
            items = v
        elif isinstance(v, float) and not math.isfinite(v):
            return f"holds a number that is not finite ({v})"
        else:
            continue
        depth += 1
        if depth > max_depth:
            return f"nests deeper than {max_depth} levels"
        for x in items:
            if isinstance(x, dict | list | float):
                stack.append((x, depth))
    return None


# -- event matching --------------------------------------------------------------------------


def lookup(obj: Any, path: str) -> Any:
    """The value at a dotted ``path`` of ``obj`` (``data.order.id``), or ``MISSING``."""
    cur = obj
    for part in path.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        else:
            return MISSING
    return cur


class Missing:
    """The type of ``MISSING``: a value that is absent (not a JSON null)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = Missing()


def match_fields(match: Mapping[str, Any]) -> str:
    """The canonical, sorted list of the paths a wait matches on, as one string."""
    return ",".join(sorted(match))


def match_key(event_name: str, match: Mapping[str, Any]) -> str:
    """A hash identifying (event name, {path: value}); waits are indexed by it."""
    canon = dumps([event_name, sorted(match.items())])
    return hashlib.sha256(canon).hexdigest()[:32]


def event_match_key(event: Mapping[str, Any], fields: str) -> str | None:
    """The key an incoming ``event`` has for a wait matching on ``fields`` (None: no match)."""
    values: dict[str, Any] = {}
    for path in fields.split(",") if fields else ():
        v = lookup(event, path)
        if v is MISSING:
            return None
        values[path] = v
    return match_key(str(event["name"]), values)


# -- signing ---------------------------------------------------------------------------------


class SignatureError(Exception):
    """A message is unsigned, forged, tampered with, or outside the allowed clock skew."""


def default_max_skew() -> float:
    """``DURABLE_MAX_CLOCK_SKEW`` (seconds) if set, else ``MAX_CLOCK_SKEW_S``."""
    raw = os.environ.get("DURABLE_MAX_CLOCK_SKEW")
    if not raw:
        return MAX_CLOCK_SKEW_S
    try:
        v = float(raw)
    except ValueError:
        raise ValueError(f"DURABLE_MAX_CLOCK_SKEW must be seconds, not {raw!r}") from None
    if not 0 < v <= 3600:
        raise ValueError("DURABLE_MAX_CLOCK_SKEW must be within (0, 3600] seconds")
    return v


class Signer:
    """HMAC-SHA256 over ``timestamp + "." + body`` with a primary and optional fallback key.

    Signing always uses the primary key; verification accepts either, so keys can be
    rotated without downtime: deploy the new key as fallback everywhere, swap it to
    primary, then drop the old one.
    """

    def __init__(
        self,
        key: str,
        fallback: str | None = None,
        *,
        max_skew: float | None = None,
    ) -> None:
        if not key:
            raise ValueError("a signing key is required")
        keys = [k for k in (fallback, key) if k]  # itsdangerous signs with the last one
        self._signer = _ItsSigner(
            keys,
            salt="durable.v1",
            key_derivation="hmac",
            digest_method=hashlib.sha256,
            algorithm=HMACAlgorithm(hashlib.sha256),
        )
        self.max_skew = max_skew if max_skew is not None else default_max_skew()

    def sign(self, body: bytes, now: float | None = None) -> dict[str, str]:
        """Headers carrying the signature of ``body``."""
        ts = str(int(now if now is not None else time.time()))
        sig = self._signer.get_signature(ts.encode() + b"." + body).decode()
        return {H_TIMESTAMP: ts, H_SIGNATURE: sig, H_VERSION: str(VERSION)}

    def precheck(self, headers: Mapping[str, str], now: float | None = None) -> int:
        """What can be checked before the body is read: both headers present and well
        formed, the timestamp fresh. Returns the timestamp; raises ``SignatureError``."""
        ts = headers.get(H_TIMESTAMP)
        sig = headers.get(H_SIGNATURE)
        if not ts or not sig:
            raise SignatureError("message is not signed")
        if not _TIMESTAMP_RE.match(ts):  # never int() an unbounded string
            raise SignatureError("malformed signature timestamp")
        if not _SIGNATURE_RE.match(sig):
            raise SignatureError("malformed signature")
        ts_i = int(ts)
        current = now if now is not None else time.time()
        if abs(current - ts_i) > self.max_skew:
            raise SignatureError("signature timestamp outside the allowed clock skew")
        return ts_i

    def verify(self, body: bytes, headers: Mapping[str, str], now: float | None = None) -> int:
        """Raise ``SignatureError`` unless ``headers`` sign ``body`` with a valid key,
        recently; return the signed timestamp."""
        ts_i = self.precheck(headers, now)
        ts = headers[H_TIMESTAMP]
        if not self._signer.verify_signature(ts.encode() + b"." + body,
                                             headers[H_SIGNATURE].encode()):
            raise SignatureError("signature does not match")
        return ts_i


# -- messages: types --------------------------------------------------------------------------
# The tag of each union (an op's ``op``, an answer's ``status``, a request's ``kind``) is
# typed as the enum member so that mypy narrows on ``== Op.SLEEP``; decoded from JSON it is
# the equal ``str``. Memo kinds and step statuses are ``str``: they come from JSON and store
# rows (values of ``MemoKind`` / ``StepStatus``).


class ErrorInfo(TypedDict):
    """An error as a memo entry records it (a step's final or retried error)."""

    type: str
    message: str
    stack: NotRequired[str]


class ErrorBody(ErrorInfo):
    """The error of an ``error`` answer: may the orchestrator call again (absent: yes),
    and when. The parser checks only ``message``."""

    retriable: NotRequired[bool]
    retry_after_ms: NotRequired[int | None]


class MemoEntry(TypedDict):
    """One recorded step of a run (docs/protocol.md §5), in a request or an answer."""

    id: str
    seq: int
    name: str
    kind: str
    status: NotRequired[str]
    attempts: NotRequired[int]
    output: NotRequired[Any]
    error: NotRequired[ErrorInfo]
    started_at: NotRequired[float]
    ended_at: NotRequired[float]


class RunRef(TypedDict):
    id: str
    attempt: int
    parent_id: str | None


class ParentResult(TypedDict):
    """What a workflow task run is told of one of its parent tasks."""

    status: str
    output: NotRequired[Any]
    error: NotRequired[Any]


class ChildResult(TypedDict):
    """One child's end, in the output of a ``children`` memo entry."""

    run_id: str
    function: str
    status: str
    output: NotRequired[Any]
    error: NotRequired[Any]


class TaskFailure(ParentResult):
    """What a workflow's on_failure task is told of the task that failed."""

    task: str


class InvokeRequest(TypedDict):
    v: int
    kind: Literal[Kind.INVOKE]
    call_id: str
    function: str
    run: RunRef
    input: Any
    event: Any
    memo: list[MemoEntry]
    budget_ms: int
    task: NotRequired[str]
    parents: NotRequired[dict[str, ParentResult]]
    failure: NotRequired[TaskFailure]
    events: NotRequired[list[dict[str, Any]]]
    """A batch run's events (``sdk.flow.Batch``), oldest first; absent for other runs
    (older orchestrators never send it)."""
    memo_epoch: NotRequired[int]
    """Which memo of the run this is: it changes when a replay rewrites the memo. Sent by
    orchestrators that can send a memo's tail only (``memo_from``); an app keeps a memo
    across calls only from such requests (docs/protocol.md, "Kept memos")."""
    memo_from: NotRequired[int]
    """Positive: ``memo`` holds only the entries from this position on; those before
    were sent earlier (same run, same ``memo_epoch``) and the app said it kept them
    (``memo_kept``). Absent or 0: ``memo`` is the whole memo."""


class IntrospectRequest(TypedDict):
    v: int
    kind: Literal[Kind.INTROSPECT]


Request: TypeAlias = InvokeRequest | IntrospectRequest


class SleepOp(TypedDict):
    op: Literal[Op.SLEEP]
    id: str
    seq: int
    name: str
    until: float


class WaitEventOp(TypedDict):
    op: Literal[Op.WAIT_EVENT]
    id: str
    seq: int
    name: str
    event: str
    match: NotRequired[dict[str, Any]]
    timeout_at: NotRequired[float | None]
    lookback: NotRequired[float]
    """Seconds before the wait is recorded in which a stored event still satisfies it
    (absent: none, only events received later)."""


class ChildSpec(TypedDict):
    function: str
    input: NotRequired[Any]


class SpawnOp(TypedDict):
    op: Literal[Op.SPAWN]
    id: str
    seq: int
    name: str
    children: list[ChildSpec]
    wait: NotRequired[bool]


class ResumeOp(TypedDict):
    op: Literal[Op.RESUME]
    at: NotRequired[float | None]


AnyOp: TypeAlias = SleepOp | WaitEventOp | SpawnOp | ResumeOp


class AnswerEvent(TypedDict):
    """An event an answer sends (``id`` and ``data`` may be absent on the wire)."""

    id: NotRequired[str]
    name: str
    data: NotRequired[dict[str, Any] | None]
    ts: NotRequired[float]


class CompleteAnswer(TypedDict):
    v: int
    call_id: str
    status: Literal[Status.COMPLETE]
    steps: NotRequired[list[MemoEntry]]
    events: NotRequired[list[AnswerEvent]]
    output: NotRequired[Any]
    skipped: NotRequired[bool]
    memo_kept: NotRequired[int]


class YieldAnswer(TypedDict):
    v: int
    call_id: str
    status: Literal[Status.YIELD]
    steps: NotRequired[list[MemoEntry]]
    events: NotRequired[list[AnswerEvent]]
    op: AnyOp
    memo_kept: NotRequired[int]
    """The memo entries from position 0 the app now keeps for the run (it may be sent
    only the rest next time: ``memo_from``); absent: none."""


class ErrorAnswer(TypedDict):
    v: int
    call_id: str
    status: Literal[Status.ERROR]
    steps: NotRequired[list[MemoEntry]]
    events: NotRequired[list[AnswerEvent]]
    error: ErrorBody
    memo_kept: NotRequired[int]


Answer: TypeAlias = CompleteAnswer | YieldAnswer | ErrorAnswer


# -- messages: builders ------------------------------------------------------------------------


def invoke_request(
    *,
    call_id: str,
    function: str,
    run_id: str,
    attempt: int,
    input: Any,
    event: Any,
    memo: Sequence[MemoEntry],
    budget_ms: int,
    parent_id: str | None = None,
    task: str | None = None,
    parents: Mapping[str, ParentResult] | None = None,
    failure: TaskFailure | None = None,
    events: Sequence[Mapping[str, Any]] | None = None,
    memo_epoch: int | None = None,
    memo_from: int = 0,
) -> InvokeRequest:
    """Build the body of an invoke request. A workflow's task run names its ``task`` and
    carries its ``parents`` ({task: {status, output?, error?}}); the workflow's on_failure
    task gets the ``failure`` ({task, status, error}) instead. A batch run carries its
    ``events``. With ``memo_epoch``, the app may keep the memo; with ``memo_from`` > 0
    too, ``memo`` is its tail from that position."""
    msg: InvokeRequest = {
        "v": VERSION,
        "kind": Kind.INVOKE,
        "call_id": call_id,
        "function": function,
        "run": {"id": run_id, "attempt": attempt, "parent_id": parent_id},
        "input": input,
        "event": event,
        "memo": list(memo),
        "budget_ms": budget_ms,
    }
    if task is not None:
        msg["task"] = task
        msg["parents"] = dict(parents or {})
        if failure is not None:
            msg["failure"] = failure
    if events is not None:
        msg["events"] = [dict(e) for e in events]
    if memo_epoch is not None:
        msg["memo_epoch"] = memo_epoch
        if memo_from > 0:
            msg["memo_from"] = memo_from
    return msg


MEMO_NEEDED = "memo_needed"
"""The status of the answer an app gives to a request with ``memo_from`` whose first
entries it does not keep (another process, restarted, or evicted): it ran nothing, and
the orchestrator sends the request again at once, with the whole memo."""


def memo_needed(call_id: str) -> dict[str, Any]:
    """The answer to a request whose memo's head this process does not keep."""
    return {"v": VERSION, "call_id": call_id, "status": MEMO_NEEDED}


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def introspect_request() -> IntrospectRequest:
    return {"v": VERSION, "kind": Kind.INTROSPECT}


def parent_result(status: str, *, output: Any = MISSING, error: Any = MISSING
                  ) -> ParentResult:
    """A parent task's result as a task run sees it: its status, output and error if any."""
    r: ParentResult = {"status": status}
    if output is not MISSING:
        r["output"] = output
    if error is not MISSING:
        r["error"] = error
    return r


def child_result(run_id: str, function: str, status: str, *, output: Any = MISSING,
                 error: Any = MISSING) -> ChildResult:
    """A child's end as a ``children`` entry records it: its output, or its error."""
    r: ChildResult = {"run_id": run_id, "function": function, "status": status}
    if output is not MISSING:
        r["output"] = output
    if error is not MISSING:
        r["error"] = error
    return r


def task_failure(task: str, status: str, *, output: Any = MISSING, error: Any = MISSING
                 ) -> TaskFailure:
    """The task that failed, as the on_failure task sees it."""
    f: TaskFailure = {"task": task, "status": status}
    if output is not MISSING:
        f["output"] = output
    if error is not MISSING:
        f["error"] = error
    return f


def memo_entry(
    id: str,
    seq: int,
    name: str,
    kind: str,
    status: str = StepStatus.COMPLETED,
    *,
    attempts: int | None = None,
    output: Any = MISSING,
    error: ErrorInfo | None = None,
    started_at: float | None = None,
    ended_at: float | None = None,
) -> MemoEntry:
    """A memo entry. ``output`` is left out unless given (``None`` is a JSON null); so are
    ``attempts``, ``error`` and the times unless not None."""
    e: MemoEntry = {"id": id, "seq": seq, "name": name, "kind": kind, "status": status}
    if attempts is not None:
        e["attempts"] = attempts
    if started_at is not None:
        e["started_at"] = started_at
    if ended_at is not None:
        e["ended_at"] = ended_at
    if output is not MISSING:
        e["output"] = output
    if error is not None:
        e["error"] = error
    return e


def error_info(type_: str, message: str, stack: str | None = None) -> ErrorInfo:
    e: ErrorInfo = {"type": type_, "message": message}
    if stack is not None:
        e["stack"] = stack
    return e


def error_body(
    type_: str,
    message: str,
    *,
    retriable: bool = True,
    retry_after_ms: int | Missing | None = None,
    stack: str | None = None,
) -> ErrorBody:
    """The error of an error answer; ``retry_after_ms=MISSING`` leaves that key out."""
    e: ErrorBody = {"type": type_, "message": message, "retriable": retriable}
    if stack is not None:
        e["stack"] = stack
    if not isinstance(retry_after_ms, Missing):
        e["retry_after_ms"] = retry_after_ms
    return e


def sleep_op(id: str, seq: int, name: str, until: float) -> SleepOp:
    return {"op": Op.SLEEP, "id": id, "seq": seq, "name": name, "until": until}


def wait_event_op(id: str, seq: int, name: str, event: str, match: dict[str, Any],
                  timeout_at: float | None, lookback: float | None = None) -> WaitEventOp:
    """A wait; ``lookback`` is sent only when positive (an older orchestrator, which does
    not know it, then sees the op it always did)."""
    op: WaitEventOp = {"op": Op.WAIT_EVENT, "id": id, "seq": seq, "name": name,
                       "event": event, "match": match, "timeout_at": timeout_at}
    if lookback:
        op["lookback"] = lookback
    return op


def is_lookback(v: Any) -> bool:
    """A valid ``lookback``: seconds, a finite number in ``[0, MAX_LOOKBACK_S]``."""
    return (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            and 0 <= v <= MAX_LOOKBACK_S)


def child_spec(function: str, input: Any) -> ChildSpec:
    return {"function": function, "input": input}


def spawn_op(id: str, seq: int, name: str, children: list[ChildSpec], wait: bool) -> SpawnOp:
    return {"op": Op.SPAWN, "id": id, "seq": seq, "name": name, "children": children,
            "wait": wait}


def resume_op(at: float) -> ResumeOp:
    return {"op": Op.RESUME, "at": at}


def answer_event(id: str, name: str, data: dict[str, Any] | None) -> AnswerEvent:
    return {"id": id, "name": name, "data": data}


def answer_complete(call_id: str, steps: list[MemoEntry], events: list[AnswerEvent],
                    output: Any, *, skipped: bool = False) -> CompleteAnswer:
    """The function returned ``output`` (a workflow task ``skipped`` by its condition
    returns None); ``skipped`` is sent only when true."""
    a: CompleteAnswer = {"v": VERSION, "call_id": call_id, "status": Status.COMPLETE,
                         "steps": steps, "events": events, "output": output}
    if skipped:
        a["skipped"] = True
    return a


def answer_yield(call_id: str, steps: list[MemoEntry], events: list[AnswerEvent],
                 op: AnyOp) -> YieldAnswer:
    return {"v": VERSION, "call_id": call_id, "status": Status.YIELD, "steps": steps,
            "events": events, "op": op}


def answer_error(call_id: str, steps: list[MemoEntry], events: list[AnswerEvent],
                 error: ErrorBody) -> ErrorAnswer:
    return {"v": VERSION, "call_id": call_id, "status": Status.ERROR, "steps": steps,
            "events": events, "error": error}


# -- messages: parsers --------------------------------------------------------------------------
# Each checks the shape of what arrived and returns the same object, typed (no copy).


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise ProtocolError(what)


def check_version(msg: Any) -> Mapping[str, Any]:
    if not isinstance(msg, Mapping):
        raise ProtocolError("message must be a JSON object")
    _require(msg.get("v") == VERSION, f"unsupported protocol version {msg.get('v')!r}")
    return msg


def parse_request(raw: Any) -> Request:
    """Check the shape of a request the app received; return it."""
    msg = check_version(raw)
    kind = msg.get("kind")
    if kind == Kind.INTROSPECT:
        return cast(IntrospectRequest, msg)
    _require(kind == Kind.INVOKE, f"unknown request kind {kind!r}")
    _require(isinstance(msg.get("function"), str), "request.function must be a string")
    _require(isinstance(msg.get("call_id"), str), "request.call_id must be a string")
    run: Any = msg.get("run")
    _require(isinstance(run, Mapping) and isinstance(run.get("id"), str), "request.run.id")
    _require(isinstance(run.get("attempt"), int), "request.run.attempt must be an integer")
    _require(isinstance(msg.get("memo"), list), "request.memo must be a list")
    for e in msg["memo"]:
        parse_memo_entry(e)
    _require(isinstance(msg.get("budget_ms"), int), "request.budget_ms must be an integer")
    _require(msg.get("task") is None or isinstance(msg["task"], str), "request.task: string")
    _require(isinstance(msg.get("parents", {}), Mapping), "request.parents must be an object")
    _require(msg.get("failure") is None or isinstance(msg["failure"], Mapping),
             "request.failure must be an object")
    evs = msg.get("events")
    _require(evs is None or (isinstance(evs, list) and all(isinstance(e, Mapping) for e in evs)),
             "request.events must be a list of objects")
    _require(msg.get("memo_epoch") is None or _count(msg["memo_epoch"]),
             "request.memo_epoch must be a non-negative integer")
    _require(msg.get("memo_from") is None or (_count(msg["memo_from"])
                                              and msg.get("memo_epoch") is not None),
             "request.memo_from must be a non-negative integer, with a memo_epoch")
    return cast(InvokeRequest, msg)


_MEMO_KINDS = frozenset(MemoKind)
_OPS = frozenset(Op)
_STATUSES = frozenset(Status)


def _is_time(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1e12


def parse_memo_entry(e: Any) -> MemoEntry:
    _require(isinstance(e, Mapping), "memo entry must be an object")
    _require(isinstance(e.get("id"), str) and e["id"] != "", "memo entry id must be a string")
    _require(isinstance(e.get("seq"), int), "memo entry seq must be an integer")
    _require(e.get("kind") in _MEMO_KINDS, f"unknown memo kind {e.get('kind')!r}")
    _require(isinstance(e.get("name"), str), "memo entry name must be a string")
    return cast(MemoEntry, e)


def parse_answer_event(ev: Any) -> AnswerEvent:
    _require(isinstance(ev, Mapping) and isinstance(ev.get("name"), str) and ev["name"],
             "an answer event needs a name")
    _require(ev.get("data") is None or isinstance(ev["data"], Mapping),
             "an answer event's data must be an object")
    return cast(AnswerEvent, ev)


def parse_op(op: Any) -> AnyOp:
    """Check the op of a yield answer; return it."""
    _require(isinstance(op, Mapping) and op.get("op") in _OPS, "answer.op is invalid")
    kind = op["op"]
    if kind != Op.RESUME:
        _require(isinstance(op.get("id"), str), "answer.op.id must be a string")
        _require(isinstance(op.get("seq"), int), "answer.op.seq must be an integer")
    if kind == Op.SLEEP:
        _require(_is_time(op.get("until")), "sleep op needs until (epoch seconds)")
    elif kind == Op.RESUME:
        _require(op.get("at") is None or _is_time(op["at"]), "resume op: at")
    elif kind == Op.WAIT_EVENT:
        _require(isinstance(op.get("event"), str) and op["event"] != "",
                 "wait_event op needs an event name")
        match: Any = op.get("match", {})
        _require(isinstance(match, Mapping), "wait_event match must be an object")
        _require(all(isinstance(k, str) and k and "," not in k for k in match),
                 "wait_event match keys must be dotted paths")
        _require(op.get("timeout_at") is None or _is_time(op["timeout_at"]),
                 "wait_event timeout_at must be epoch seconds")
        _require(op.get("lookback") is None or is_lookback(op["lookback"]),
                 f"wait_event lookback must be seconds in [0, {MAX_LOOKBACK_S:g}]")
    else:  # Op.SPAWN
        children: Any = op.get("children")
        _require(isinstance(children, list), "spawn op needs children")
        for c in children:
            _require(
                isinstance(c, Mapping) and isinstance(c.get("function"), str),
                "spawn child needs a function",
            )
    return cast(AnyOp, op)


def parse_answer(raw: Any, call_id: str) -> Answer:
    """Check an invoke answer the orchestrator received; return it."""
    msg = check_version(raw)
    _require(msg.get("call_id") == call_id, "answer is not for this call")
    status = msg.get("status")
    _require(status in _STATUSES, f"unknown answer status {status!r}")
    steps = msg.get("steps", [])
    _require(isinstance(steps, list), "answer.steps must be a list")
    for e in steps:
        parse_memo_entry(e)
    events = msg.get("events", [])
    _require(isinstance(events, list), "answer.events must be a list")
    for ev in events:
        parse_answer_event(ev)
    if status == Status.YIELD:
        parse_op(msg.get("op"))
    elif status == Status.ERROR:
        err = msg.get("error")
        _require(isinstance(err, Mapping) and isinstance(err.get("message"), str), "error")
    _require(msg.get("memo_kept") is None or _count(msg["memo_kept"]),
             "answer.memo_kept must be a non-negative integer")
    return cast(Answer, msg)

