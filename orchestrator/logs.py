"""Log output: plain text (the default) or one JSON object a line (``log_format=json``).

A log call about a run names it in ``extra``: ``run_id``, ``call_id``, ``app`` and
``function``, those it knows (``CONTEXT``). The JSON formatter writes them as fields;
the text format is unchanged, its messages name the call already. The fields are built
only in the branches that log, so a call that logs nothing pays nothing for them (a
contextvar set per call would cost every call, and would not reach the reducer, which
applies a batch of many runs' answers in one task).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final, Literal

CONTEXT: Final = ("run_id", "call_id", "app", "function")
"""The ``extra`` fields a log call about a run or an app may carry, in output order."""
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TRACE: Final = 5
"""uvicorn's ``trace`` level (it names it only once it configures its own logging)."""


_BREAKS: Final = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028",
                                "\u2029": "\\u2029"})


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``ts`` (ISO 8601 UTC), ``level``, ``logger``, ``message``,
    the ``CONTEXT`` fields the record carries, ``exc`` (the traceback) if any, and
    ``stack`` for a ``stack_info=True`` call. Non-ASCII is kept as is; a line break in
    a message or traceback is escaped, so a record is always one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT:
            value = record.__dict__.get(key)
            if value is not None:
                out[key] = str(value)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        line = json.dumps(out, ensure_ascii=False, default=str)
        # JSON escapes control characters but not these, which line readers (Python's
        # ``splitlines``, JavaScript) take for line breaks; they occur only inside strings
        return line.translate(_BREAKS)


def configure(level: str, fmt: Literal["text", "json"]) -> None:
    """Send the root logger's records to stderr at ``level`` (a ``LogLevel``), as text or
    JSON; uvicorn's loggers propagate to it when uvicorn is given no ``log_config``."""
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)
