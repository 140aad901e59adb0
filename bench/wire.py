"""Wire types (issue 9): what typed messages cost. Prints figures; docs/benchmarks.md
records them.

    python -m bench.wire [--number 2000] [--repeat 5]

Times, per message, in one process (no I/O), three ways of typing the wire messages:
  * TypedDict + hand parser: ``sdk.protocol`` as shipped (builders, ``dumps``, ``loads``,
    ``parse_request`` / ``parse_answer``)
  * frozen slots dataclasses, with hand ``to_wire`` / ``from_wire`` doing the same checks
  * pydantic v2 models (``model_dump_json`` / ``model_validate_json``)
for an invoke request with a memo of 1 and of 100 step entries (what the orchestrator
builds and encodes, what the app decodes and parses) and an answer of 3 steps and a
sleep op (the other way round). CPU time of the process, best of ``--repeat`` rounds of
``--number`` messages each (a memo of 100: ``--number`` / 100).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from sdk import protocol as p

CALL_ID = "0190a6c2f1e27c1d9a3b4e5f60718293:4"
RUN_ID = "0190a6c2f1e27c1d9a3b4e5f60718293"
NOW = 1_718_000_000.0


def _output(i: int) -> dict[str, Any]:
    return {"n": i, "note": f"value {i}", "ok": True}


# -- 1. TypedDict + hand parser (sdk.protocol) -----------------------------------------------


def td_request(n: int) -> bytes:
    memo = [p.memo_entry(f"s:{i}", i, "s", p.MemoKind.STEP, attempts=1, output=_output(i))
            for i in range(n)]
    return p.dumps(p.invoke_request(call_id=CALL_ID, function="chain", run_id=RUN_ID,
                                    attempt=0, input={"n": n}, event=None, memo=memo,
                                    budget_ms=30_000))


def td_parse_request(data: bytes) -> Any:
    return p.parse_request(p.loads(data))


def td_answer() -> bytes:
    steps = [p.memo_entry(f"s:{i}", i, "s", p.MemoKind.STEP, attempts=1, output=_output(i),
                          started_at=NOW, ended_at=NOW) for i in range(3)]
    return p.dumps(p.answer_yield(CALL_ID, steps, [], p.sleep_op("nap", 3, "nap", NOW + 60)))


def td_parse_answer(data: bytes) -> Any:
    return p.parse_answer(p.loads(data), CALL_ID)


# -- 2. frozen slots dataclasses ---------------------------------------------------------------


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise p.ProtocolError(what)


@dataclass(frozen=True, slots=True)
class DMemoEntry:
    id: str
    seq: int
    name: str
    kind: str
    status: str = "completed"
    attempts: int = 0
    output: Any = p.MISSING
    started_at: float | None = None
    ended_at: float | None = None

    def to_wire(self) -> dict[str, Any]:
        e: dict[str, Any] = {"id": self.id, "seq": self.seq, "name": self.name,
                             "kind": self.kind, "status": self.status,
                             "attempts": self.attempts}
        if self.output is not p.MISSING:
            e["output"] = self.output
        if self.started_at is not None:
            e["started_at"] = self.started_at
        if self.ended_at is not None:
            e["ended_at"] = self.ended_at
        return e

    @classmethod
    def from_wire(cls, e: Any) -> DMemoEntry:
        p.parse_memo_entry(e)  # the same checks
        return cls(e["id"], e["seq"], e["name"], e["kind"], e.get("status", "completed"),
                   e.get("attempts", 0), e.get("output", p.MISSING), e.get("started_at"),
                   e.get("ended_at"))


@dataclass(frozen=True, slots=True)
class DRunRef:
    id: str
    attempt: int
    parent_id: str | None


@dataclass(frozen=True, slots=True)
class DInvokeRequest:
    call_id: str
    function: str
    run: DRunRef
    input: Any
    event: Any
    memo: tuple[DMemoEntry, ...]
    budget_ms: int

    def to_wire(self) -> dict[str, Any]:
        return {"v": p.VERSION, "kind": "invoke", "call_id": self.call_id,
                "function": self.function,
                "run": {"id": self.run.id, "attempt": self.run.attempt,
                        "parent_id": self.run.parent_id},
                "input": self.input, "event": self.event,
                "memo": [e.to_wire() for e in self.memo], "budget_ms": self.budget_ms}

    @classmethod
    def from_wire(cls, msg: Any) -> DInvokeRequest:
        p.check_version(msg)
        _check(msg.get("kind") == "invoke", "kind")
        _check(isinstance(msg.get("function"), str), "function")
        _check(isinstance(msg.get("call_id"), str), "call_id")
        run = msg.get("run")
        _check(isinstance(run, dict) and isinstance(run.get("id"), str), "run.id")
        _check(isinstance(run.get("attempt"), int), "run.attempt")
        _check(isinstance(msg.get("memo"), list), "memo")
        _check(isinstance(msg.get("budget_ms"), int), "budget_ms")
        return cls(msg["call_id"], msg["function"],
                   DRunRef(run["id"], run["attempt"], run.get("parent_id")),
                   msg.get("input"), msg.get("event"),
                   tuple(DMemoEntry.from_wire(e) for e in msg["memo"]), msg["budget_ms"])


@dataclass(frozen=True, slots=True)
class DSleepOp:
    id: str
    seq: int
    name: str
    until: float


@dataclass(frozen=True, slots=True)
class DYieldAnswer:
    call_id: str
    steps: tuple[DMemoEntry, ...]
    op: DSleepOp

    def to_wire(self) -> dict[str, Any]:
        return {"v": p.VERSION, "call_id": self.call_id, "status": "yield",
                "steps": [e.to_wire() for e in self.steps], "events": [],
                "op": {"op": "sleep", "id": self.op.id, "seq": self.op.seq,
                       "name": self.op.name, "until": self.op.until}}

    @classmethod
    def from_wire(cls, msg: Any, call_id: str) -> DYieldAnswer:
        p.check_version(msg)
        _check(msg.get("call_id") == call_id, "call_id")
        _check(msg.get("status") == "yield", "status")
        _check(isinstance(msg.get("steps", []), list), "steps")
        op = p.parse_op(msg.get("op"))
        assert op["op"] == p.Op.SLEEP
        return cls(msg["call_id"], tuple(DMemoEntry.from_wire(e) for e in msg["steps"]),
                   DSleepOp(op["id"], op["seq"], op["name"], op["until"]))


def dc_request(n: int) -> bytes:
    memo = tuple(DMemoEntry(f"s:{i}", i, "s", "step", attempts=1, output=_output(i))
                 for i in range(n))
    req = DInvokeRequest(CALL_ID, "chain", DRunRef(RUN_ID, 0, None), {"n": n}, None, memo,
                         30_000)
    return p.dumps(req.to_wire())


def dc_parse_request(data: bytes) -> Any:
    return DInvokeRequest.from_wire(p.loads(data))


def dc_answer() -> bytes:
    steps = tuple(DMemoEntry(f"s:{i}", i, "s", "step", attempts=1, output=_output(i),
                             started_at=NOW, ended_at=NOW) for i in range(3))
    return p.dumps(DYieldAnswer(CALL_ID, steps, DSleepOp("nap", 3, "nap", NOW + 60)).to_wire())


def dc_parse_answer(data: bytes) -> Any:
    return DYieldAnswer.from_wire(p.loads(data), CALL_ID)


# -- 3. pydantic v2 models ---------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")


class PMemoEntry(_Model):
    id: str
    seq: int
    name: str
    kind: Literal["step", "sleep", "wait", "spawn", "children", "send_event"]
    status: str = "completed"
    attempts: int = 0
    output: Any = None
    started_at: float | None = None
    ended_at: float | None = None


class PRunRef(_Model):
    id: str
    attempt: int
    parent_id: str | None = None


class PInvokeRequest(_Model):
    v: Literal[1] = 1
    kind: Literal["invoke"] = "invoke"
    call_id: str
    function: str
    run: PRunRef
    input: Any = None
    event: Any = None
    memo: list[PMemoEntry]
    budget_ms: int


class PSleepOp(_Model):
    op: Literal["sleep"] = "sleep"
    id: str
    seq: int
    name: str
    until: float


class PYieldAnswer(_Model):
    v: Literal[1] = 1
    call_id: str
    status: Literal["yield"] = "yield"
    steps: list[PMemoEntry] = []
    events: list[dict[str, Any]] = []
    op: PSleepOp


def pd_request(n: int) -> bytes:
    memo = [PMemoEntry(id=f"s:{i}", seq=i, name="s", kind="step", attempts=1, output=_output(i))
            for i in range(n)]
    req = PInvokeRequest(call_id=CALL_ID, function="chain",
                         run=PRunRef(id=RUN_ID, attempt=0), input={"n": n}, memo=memo,
                         budget_ms=30_000)
    # exclude_unset: an absent output stays absent, as on the wire today
    return req.model_dump_json(exclude_unset=True).encode()


def pd_parse_request(data: bytes) -> Any:
    return PInvokeRequest.model_validate_json(data)


def pd_answer() -> bytes:
    steps = [PMemoEntry(id=f"s:{i}", seq=i, name="s", kind="step", attempts=1,
                        output=_output(i), started_at=NOW, ended_at=NOW) for i in range(3)]
    op = PSleepOp(id="nap", seq=3, name="nap", until=NOW + 60)
    return PYieldAnswer(call_id=CALL_ID, steps=steps, op=op).model_dump_json().encode()


def pd_parse_answer(data: bytes) -> Any:
    return PYieldAnswer.model_validate_json(data, strict=False)


# -- timing -------------------------------------------------------------------------------------

WAYS: dict[str, tuple[Callable[[int], bytes], Callable[[bytes], Any],
                      Callable[[], bytes], Callable[[bytes], Any]]] = {
    "TypedDict + hand parser": (td_request, td_parse_request, td_answer, td_parse_answer),
    "frozen slots dataclasses": (dc_request, dc_parse_request, dc_answer, dc_parse_answer),
    "pydantic v2 models": (pd_request, pd_parse_request, pd_answer, pd_parse_answer),
}


def _us(fn: Callable[[], Any], number: int, repeat: int) -> float:
    # CPU time of this process, not wall time: the VM's other tenants inflate less of it
    t = timeit.repeat(fn, number=number, repeat=repeat, timer=time.process_time)
    return min(t) / number * 1e6


def measure(number: int, repeat: int) -> dict[str, list[float]]:
    """µs per message: request (memo of 1, of 100) and answer, each way round."""
    out: dict[str, list[float]] = {}
    for way, (build, parse, answer, parse_answer) in WAYS.items():
        row = []
        for n in (1, 100):
            data = build(n)
            assert json.loads(data)["memo"][-1]["output"] == _output(n - 1)
            k = max(1, number // n)
            row.append(_us(partial(build, n), k, repeat))
            row.append(_us(partial(parse, data), k, repeat))
        row.append(_us(answer, number, repeat))
        row.append(_us(partial(parse_answer, answer()), number, repeat))
        out[way] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--number", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"# {platform.python_implementation()} {platform.python_version()}, "
          f"µs (process CPU time) per message, best of {args.repeat}")
    cols = ["req 1: build+encode", "decode+parse", "req 100: build+encode", "decode+parse",
            "answer: build+encode", "decode+parse"]
    print(f"{'':26}" + "".join(f"{c:>23}" for c in cols))
    for way, row in measure(args.number, args.repeat).items():
        print(f"{way:26}" + "".join(f"{v:23.1f}" for v in row))


if __name__ == "__main__":
    main()
