"""Cron expressions: parsed and stepped by APScheduler's ``CronTrigger``.

Five fields (minute hour day month day-of-week) as in crontab, or six with seconds first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger


class CronError(ValueError):
    """A cron expression or time zone that does not parse; ``field`` names which."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


#: A time to look for a first fire after: a day that exists (any 29 February repeats).
_EPOCH_2000 = 946684800.0

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekdays(field: str) -> str:
    """Crontab weekdays (0 or 7 = Sunday, 1 = Monday) as names, which APScheduler reads
    unambiguously (its own numbers start at Monday = 0)."""
    out = []
    for token in field.split(","):
        rng, _, step_s = token.partition("/")
        step = int(step_s) if step_s.isdigit() else None
        if step_s and step is None:
            return field  # let APScheduler report the error
        if rng == "*":
            lo, hi = 0, 6
        elif rng.isdigit():
            lo = hi = int(rng)
            if step is not None:
                hi = 6
        elif "-" in rng and all(x.isdigit() for x in rng.split("-", 1)):
            lo, hi = (int(x) for x in rng.split("-", 1))
        else:
            out.append(token)  # names (mon-fri), or something APScheduler will judge
            continue
        if not (0 <= lo <= 7 and 0 <= hi <= 7 and lo <= hi):
            return field
        if rng == "*" and step is None:
            out.append("*")
            continue
        out += [_DAYS[d % 7] for d in range(lo, hi + 1, step or 1)]
    return ",".join(dict.fromkeys(out))


def parse(expression: str, timezone: str = "UTC") -> CronTrigger:
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {timezone!r} (use an IANA name such as "
                        f"'Europe/Paris')", "timezone") from None
    fields = expression.split()
    try:
        if len(fields) == 5:
            fields = ["0", *fields]
        if len(fields) == 6:
            second, minute, hour, day, month, dow = fields
            trigger = CronTrigger(second=second, minute=minute, hour=hour, day=day,
                                  month=month, day_of_week=_weekdays(dow), timezone=tz)
    except (ValueError, TypeError) as exc:
        raise CronError(f"cron expression {expression!r} does not parse: {exc}",
                        "expression") from None
    if len(fields) == 6:
        if next_fire(trigger, _EPOCH_2000) is None:
            raise CronError(f"cron expression {expression!r} never fires (no such date)",
                            "expression")
        return trigger
    raise CronError(f"cron expression {expression!r} has {len(fields)} fields; use 5 "
                    f"(minute hour day month weekday) or 6 (seconds first)", "expression")


def next_fire(trigger: CronTrigger, after: float) -> float | None:
    """The first fire time strictly after ``after`` (epoch seconds), or None if never."""
    now = datetime.fromtimestamp(after, UTC)
    nxt = trigger.get_next_fire_time(None, now)
    if nxt is not None and nxt.timestamp() <= after:
        # the trigger may return ``now`` itself when it matches; step past it
        nxt = trigger.get_next_fire_time(nxt, now + timedelta(microseconds=1))
        while nxt is not None and nxt.timestamp() <= after:
            nxt = trigger.get_next_fire_time(nxt, nxt + timedelta(seconds=1))
    return None if nxt is None else nxt.timestamp()


def repeats_wall_clock(previous: float | None, tick: float, timezone: str) -> bool:
    """Whether ``tick`` shows the same local time as the ``previous`` fire: the hour a
    daylight-saving change repeats. Like classic cron, such a tick does not fire again."""
    if previous is None:
        return False
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    seen = datetime.fromtimestamp(previous, tz).replace(tzinfo=None)
    now = datetime.fromtimestamp(tick, tz).replace(tzinfo=None)
    return now <= seen
