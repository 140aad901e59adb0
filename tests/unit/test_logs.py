"""The JSON log formatter (one object a line, the run's fields, tracebacks, non-ASCII),
the text format unchanged, and the engine's log calls naming the run they concern."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

import httpx
import pytest
import respx

from orchestrator.engine.claim import Claim
from orchestrator.engine.invoker import Failed, Invoker
from orchestrator.engine.registry import FunctionInfo
from orchestrator.logs import CONTEXT, TEXT_FORMAT, JsonFormatter
from sdk import protocol as p
from sdk.function import Retry


def _record(msg: str, *args: object, level: int = logging.WARNING,
            extra: dict[str, object] | None = None,
            exc_info: logging._SysExcInfoType | None = None) -> logging.LogRecord:
    logger = logging.getLogger("orchestrator.test")
    return logger.makeRecord(logger.name, level, __file__, 1, msg, args, exc_info,
                             extra=extra)


def test_a_record_is_one_json_object_with_its_fields() -> None:
    rec = _record("discarded the answer to %s", "r1:2", level=logging.INFO,
                  extra={"run_id": "r1", "call_id": "r1:2", "app": "shop",
                         "function": "fulfil-order"})
    line = JsonFormatter().format(rec)
    out = json.loads(line)
    assert out == {"ts": out["ts"], "level": "INFO", "logger": "orchestrator.test",
                   "message": "discarded the answer to r1:2", "run_id": "r1",
                   "call_id": "r1:2", "app": "shop", "function": "fulfil-order"}
    ts = datetime.fromisoformat(out["ts"])
    assert ts.utcoffset() == UTC.utcoffset(None) and out["ts"].endswith("Z")
    assert abs(ts.timestamp() - rec.created) < 0.001
    assert list(out) == ["ts", "level", "logger", "message", *CONTEXT]


def test_fields_not_known_are_left_out() -> None:
    out = json.loads(JsonFormatter().format(
        _record("app %s verifies again", "shop", extra={"app": "shop", "run_id": None})))
    assert out["app"] == "shop"
    assert not {"run_id", "call_id", "function", "exc"} & set(out)


def test_an_exception_is_its_traceback_on_the_same_line() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        rec = _record("delivering %s failed", "r1:1", level=logging.ERROR,
                      exc_info=sys.exc_info(), extra={"call_id": "r1:1"})
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    out = json.loads(line)
    assert out["message"] == "delivering r1:1 failed" and out["call_id"] == "r1:1"
    assert out["exc"].startswith("Traceback (most recent call last):\n")
    assert out["exc"].endswith("RuntimeError: boom\nsecond line")
    assert "test_an_exception_is_its_traceback_on_the_same_line" in out["exc"]


def test_a_message_with_newlines_and_non_ascii_stays_one_line() -> None:
    msg = "commande reçue\n  ligne 2\r\n\t€ 東京 \u2028 \u2029 \x85 \x0b\x1c fin"
    line = JsonFormatter().format(_record("%s", msg, extra={"function": "café"}))
    assert len(line.splitlines()) == 1
    assert "reçue" in line and "東京" in line  # kept as is, not \\u-escaped
    out = json.loads(line)
    assert out["message"] == msg and out["function"] == "café"


def test_an_argument_json_cannot_encode_is_its_str() -> None:
    out = json.loads(JsonFormatter().format(
        _record("took %r", object(), extra={"run_id": 42})))
    assert out["message"].startswith("took <object object at ")
    assert out["run_id"] == "42"


def test_the_text_format_is_unchanged() -> None:
    rec = _record("discarded the answer to %s", "r1:2", extra={"run_id": "r1"})
    line = logging.Formatter(TEXT_FORMAT).format(rec)
    assert line.endswith(" WARNING orchestrator.test: discarded the answer to r1:2")


def _claim() -> Claim:
    class Run:
        function = "fulfil-order"

    fn = FunctionInfo("fulfil-order", "shop", "http://app.test/api/durable", "task", {},
                      Retry())
    return Claim("r1", 3, 0, None, Run(), fn)  # type: ignore[arg-type]


def test_a_claim_names_its_call() -> None:
    assert _claim().log_extra() == {"run_id": "r1", "call_id": "r1:3", "app": "shop",
                                    "function": "fulfil-order"}
    c = _claim()
    c.fn = None
    assert c.log_extra()["app"] is None


@pytest.mark.respx(using="httpx")
async def test_the_invoker_names_the_call_it_logs_about(
        respx_mock: respx.MockRouter, caplog: pytest.LogCaptureFixture) -> None:
    url = "http://app.test/api/durable"
    body = b'{"v": 1}'
    answer = p.dumps({"v": p.VERSION, "call_id": "r1:3", "status": "complete"})
    respx_mock.post(url).mock(return_value=httpx.Response(
        200, content=answer, headers={"content-type": "application/json",
                                      **p.Signer("another-key").sign(answer)}))
    inv = Invoker(p.Signer("the-key"), timeout=5.0)
    try:
        with caplog.at_level(logging.WARNING, "orchestrator.invoker"):
            out = await inv.invoke(url, body, "r1:3", run_id="r1", app="shop",
                                   function="fulfil-order")
    finally:
        await inv.close()
    assert isinstance(out, Failed) and out.misconfigured
    assert [r.getMessage().split(" ", 3)[:3] for r in caplog.records] == [
        ["discarded", "an", "answer"], ["app", "at", url]]
    for r in caplog.records:
        fields = json.loads(JsonFormatter().format(r))
        assert {k: fields[k] for k in CONTEXT} == {
            "run_id": "r1", "call_id": "r1:3", "app": "shop", "function": "fulfil-order"}
