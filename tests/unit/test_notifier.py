"""What a replica tells the others (``Notifier.tell``) and what it does with what it
hears (``Notifier.heard``)."""

from __future__ import annotations

import time
from typing import cast

from orchestrator.engine.lifecycle import SOON, Effects
from orchestrator.engine.notifier import Notifier
from orchestrator.engine.registry import Registry


def _notifier(reach: float = 30.0) -> tuple[Notifier, list[str]]:
    n = Notifier()
    sent: list[str] = []
    n.broadcast = sent.append
    n.reach = reach
    return n, sent


def test_nothing_is_told_without_other_replicas() -> None:
    n = Notifier()
    n.tell(time.time(), time.time())  # no broadcast (SQLite): nothing to do, no error


def test_one_notification_carries_both_times() -> None:
    n, sent = _notifier()
    now = time.time()
    n.tell(now + 1.0, now + 2.0)
    assert sent == [f"due {now + 1.0:.3f} timer {now + 2.0:.3f}"]


def test_a_time_beyond_the_others_reach_is_not_told() -> None:
    n, sent = _notifier(reach=30.0)
    n.tell(time.time() + 31.0)
    assert sent == []


def test_a_later_time_is_not_told_while_an_earlier_one_is_pending() -> None:
    n, sent = _notifier()
    now = time.time()
    n.tell(now + 5.0)
    n.tell(now + 6.0)  # those told look again at +5 and read this one from the database
    n.tell(now + 4.0)  # earlier: told
    assert sent == [f"due {now + 5.0:.3f}", f"due {now + 4.0:.3f}"]


def test_a_time_is_told_again_once_the_one_before_has_passed() -> None:
    n, sent = _notifier()
    now = time.time()
    n.tell(now - 0.5)
    n.tell(now + 1.0)
    assert len(sent) == 2


def test_heard_due_wakes_the_dispatcher_only_if_earlier_than_planned() -> None:
    n = Notifier()
    n.planned_wake = time.time() + 10.0
    n.heard(f"due {time.time() + 20.0:.3f}")
    assert not n.work.is_set()
    n.heard(f"due {time.time() + 5.0:.3f}")
    assert n.work.is_set()


def test_heard_timer_goes_to_the_scheduler() -> None:
    n = Notifier()
    got: list[float] = []
    n.timers = got.append
    n.heard("timer 12.500 due 99.000")
    assert got == [12.5]
    assert n.work.is_set()  # 99 is before "inf": the dispatcher plans again


def test_losing_the_connection_makes_the_dispatcher_plan_again() -> None:
    n = Notifier()
    n.listen_state(True)
    assert n.listening and n.work.is_set()
    n.work.clear()
    n.listen_state(False)
    assert not n.listening and n.work.is_set()


def test_effects_keep_the_earliest_due_time_worth_telling() -> None:
    fx = Effects(cast("Registry", None))
    now = time.time()
    fx.due_at(now + 0.05)  # this replica's own dispatcher claims it: not told
    assert fx.due_later is None
    fx.due_at(now + 10.0)
    fx.due_at(now + 5.0)
    assert fx.due == now + 0.05 and fx.due_later == now + 5.0
    assert SOON == 1.0


async def test_a_watch_set_after_the_run_ended_here_is_done_at_once() -> None:
    """``POST /runs?wait`` watches a run it just created without reading it first: an end
    this replica settled before the watch was set must not be missed."""
    n = Notifier()
    n.runs_ended(["r1"])
    assert n.watch("r1").done()
    pending = n.watch("r2")
    assert not pending.done()
    n.runs_ended(["r2"])
    assert pending.done()


async def test_the_runs_ended_lately_are_bounded() -> None:
    n = Notifier()
    n.runs_ended(f"r{i}" for i in range(Notifier.RECENT + 10))
    assert not n.watch("r0").done()  # forgotten: the oldest went first
    assert n.watch(f"r{Notifier.RECENT + 9}").done()
    assert len(n._ended) == Notifier.RECENT
