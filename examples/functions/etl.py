"""Daily sales ETL: a DAG workflow a newcomer can read top to bottom.

::

                  +--> clean --+--> load --+
    extract ------+            |           +--> report
                  +--> enrich -+   clean --+
    (on failure: alert)

``extract`` reads each region's sales export for the day (CSV text, generated here from
the date and the region so the example needs no files or network); ``clean`` and
``enrich`` run in parallel (deduplicate/validate the rows; fetch the FX rates);
``load`` fans in, converts to EUR and upserts per-region totals into a warehouse (a dict
here) unless there is nothing to load; ``report`` runs either way and says which it was.
If a task fails, ``alert`` reports it.

Triggered by the ``sales.uploaded`` event, by a cron every day at 06:00 Paris time (for
the day before), or directly::

    await etl.run({"date": "2026-11-25", "regions": ["eu", "us", "apac"]})
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from sdk import Context, Cron, NonRetriableError, Retry, Workflow

TZ = "Europe/Paris"


class SalesDay(BaseModel):
    date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")
    """The day to load (ISO); None: yesterday in Paris (picked once, in a step)."""
    regions: list[str] = Field(default_factory=lambda: ["eu", "us", "apac"])


etl = Workflow(
    "etl-daily-sales",
    triggers=["sales.uploaded"],
    crons=[Cron("0 6 * * *", timezone=TZ, input={"regions": ["eu", "us", "apac"]})],
    input_model=SalesDay,
    retry=Retry(max_attempts=3, initial_delay=0.5),  # tasks without their own policy
    timeout=timedelta(hours=1),  # the whole workflow run
)

# -- the "source system": one CSV export per region and day ----------------------------------

CURRENCY = {"eu": "EUR", "us": "USD", "apac": "SGD"}
CATALOG = {"SKU-MUG": 1250, "SKU-TEE": 2400, "SKU-CAP": 1800, "SKU-BAG": 3900}
"""Unit prices in the region's currency, in minor units (cents)."""
FIELDS = ["order_id", "region", "sku", "qty", "unit_price_cents", "currency"]


def _n(*parts: str) -> int:
    return int(hashlib.sha256(":".join(parts).encode()).hexdigest()[:8], 16)


def read_export(day: str, region: str) -> str:
    """The day's export for a region, as the upstream system drops it: 3 to 5 orders, the
    first one sent twice, and a test order with quantity 0 (the export is not clean)."""
    skus = sorted(CATALOG)
    lines = [",".join(FIELDS)]
    for i in range(3 + _n(day, region) % 3):
        sku = skus[_n(day, region, str(i)) % len(skus)]
        qty = 1 + _n(day, region, str(i), "qty") % 4
        lines.append(f"{region}-{day.replace('-', '')}-{i + 1},{region},{sku},{qty},"
                     f"{CATALOG[sku]},{CURRENCY[region]}")
    lines.append(lines[1])  # resent
    lines.append(f"{region}-test,{region},SKU-MUG,0,{CATALOG['SKU-MUG']},{CURRENCY[region]}")
    return "\n".join(lines) + "\n"


def _yesterday() -> str:
    return (datetime.now(ZoneInfo(TZ)).date() - timedelta(days=1)).isoformat()


# -- the tasks ----------------------------------------------------------------------------------

@etl.task(timeout=timedelta(minutes=5))
async def extract(ctx: Context, day: SalesDay) -> dict[str, Any]:
    unknown = [r for r in day.regions if r not in CURRENCY]
    if unknown:  # retrying will not help: fail the task (and so the workflow) at once
        raise NonRetriableError(f"no sales export for region(s) {unknown}")
    # a step, so the day is picked once: a retry or replay after midnight loads the same day
    date = day.date or await ctx.step.run("pick-date", _yesterday)
    exports = {r: await ctx.step.run(f"read-{r}", read_export, date, r) for r in day.regions}
    return {"date": date, "exports": exports}


def validate(exports: dict[str, str]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, str]] = []
    seen: set[str] = set()
    for text in exports.values():
        for rec in csv.DictReader(io.StringIO(text)):
            oid = rec["order_id"]
            if oid in seen:
                rejected.append({"order_id": oid, "reason": "duplicate"})
            elif rec["sku"] not in CATALOG or int(rec["qty"]) <= 0:
                rejected.append({"order_id": oid, "reason": "invalid"})
            else:
                seen.add(oid)
                rows.append({"order_id": oid, "region": rec["region"], "qty": int(rec["qty"]),
                             "amount_cents": int(rec["qty"]) * int(rec["unit_price_cents"]),
                             "currency": rec["currency"]})
    return {"rows": rows, "rejected": rejected}


@etl.task(parents=[extract])
async def clean(ctx: Context, day: SalesDay) -> dict[str, Any]:
    ext = ctx.parent(extract)  # the parent's output, by task
    checked = await ctx.step.run("validate", validate, ext["exports"])
    return {"date": ext["date"], **checked}


def fx_rates(date: str, currencies: list[str]) -> dict[str, int]:
    # a real app asks its FX provider for the day's rates; these are fixed
    ppm = {"EUR": 1_000_000, "USD": 920_000, "SGD": 690_000}  # EUR per unit, x 10^6
    return {c: ppm[c] for c in currencies}


@etl.task(parents=[extract])
async def enrich(ctx: Context, day: SalesDay) -> dict[str, Any]:
    ext = ctx.parent(extract)
    currencies = sorted({CURRENCY[r] for r in ext["exports"]})
    rates = await ctx.step.run("fx-rates", fx_rates, ext["date"], currencies,
                               retry=Retry(max_attempts=5, initial_delay=0.2))
    return {"eur_rate_ppm": rates}


WAREHOUSE: dict[tuple[str, str], dict[str, Any]] = {}
"""daily_sales(date, region) -> totals: an upsert, so loading a day twice is harmless."""


def upsert(date: str, totals: dict[str, dict[str, int]]) -> int:
    for region, t in totals.items():
        WAREHOUSE[(date, region)] = {"date": date, "region": region, **t}
    return len(totals)


@etl.task(parents=[clean, enrich], skip_if=lambda ctx: not ctx.parent(clean)["rows"],
          retry=Retry(max_attempts=5, initial_delay=1.0), timeout=timedelta(minutes=10))
async def load(ctx: Context, day: SalesDay) -> dict[str, Any]:
    date, rows = ctx.parent(clean)["date"], ctx.parent(clean)["rows"]
    rates = ctx.parent(enrich)["eur_rate_ppm"]
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        t = totals.setdefault(row["region"], {"orders": 0, "units": 0, "revenue_eur_cents": 0})
        t["orders"] += 1
        t["units"] += row["qty"]
        t["revenue_eur_cents"] += round(row["amount_cents"] * rates[row["currency"]] / 1e6)
    written = await ctx.step.run("upsert", upsert, date, totals)
    return {"date": date, "regions_written": written, "totals": totals,
            "revenue_eur_cents": sum(t["revenue_eur_cents"] for t in totals.values())}


@etl.task(parents=[clean, load])
async def report(ctx: Context, day: SalesDay) -> str:
    # runs even when load was skipped (clean ran): a task is skipped only if all its
    # parents were
    rejected = len(ctx.parent(clean)["rejected"])
    if ctx.was_skipped(load):
        return f"nothing to load ({rejected} rows rejected)"
    out = ctx.parent(load)
    return (f"loaded {out['regions_written']} regions, "
            f"{out['revenue_eur_cents'] / 100:.2f} EUR ({rejected} rows rejected)")


PAGES: list[str] = []
"""What was sent to the on-call channel (a real app calls its pager here)."""


def page(message: str) -> str:
    PAGES.append(message)
    return message


@etl.on_failure()
async def alert(ctx: Context, day: SalesDay) -> dict[str, Any]:
    f = ctx.failure or {}  # {"task", "status", "error"} of the task that failed
    err = f.get("error") or {}
    message = (f"etl-daily-sales: task {f.get('task')!r} {f.get('status')}: "
               f"{err.get('type')}: {err.get('message')}")
    # a step, so the page is sent once even if this task is retried
    return {"alert": await ctx.step.run("page", page, message)}


FUNCTIONS = [etl]
