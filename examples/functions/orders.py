"""Order fulfilment: a durable task a newcomer can read top to bottom.

charge the card (a step, retried on failure) -> wait for ``shipment.delivered`` for this
order (up to 7 days) -> sleep a while -> fan out one notification child per recipient ->
return a summary.
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field

from sdk import Child, Context, Retry, task


class Order(BaseModel):
    order_id: str
    amount_cents: int = Field(gt=0)
    customer: str
    notify: list[str] = Field(default_factory=list)


def _delay(name: str, default: float) -> float:
    """Example delays are tunable so a demo (or a test) need not wait for days."""
    return float(os.environ.get(name, default))


async def charge_card(order_id: str, amount_cents: int) -> dict[str, Any]:
    # a real app calls its payment provider here; this one derives a stable charge id
    charge = hashlib.sha256(f"{order_id}:{amount_cents}".encode()).hexdigest()[:12]
    return {"charge_id": f"ch_{charge}", "amount_cents": amount_cents}


@task("fulfil-order", triggers=["order.created"], retry=Retry(max_attempts=3, initial_delay=0.5),
      input_model=Order)
async def fulfil_order(ctx: Context, order: Order) -> dict[str, Any]:
    charge = await ctx.step.run("charge", charge_card, order.order_id, order.amount_cents)
    delivered = await ctx.wait_for_event(
        "shipment.delivered",
        match={"data.order_id": order.order_id},
        timeout=timedelta(seconds=_delay("ORDERS_DELIVERY_TIMEOUT_S", 7 * 86400)),
    )
    if delivered is None:
        return {"order_id": order.order_id, "status": "not delivered", "charge": charge}
    await ctx.sleep_for(timedelta(seconds=_delay("ORDERS_FOLLOWUP_DELAY_S", 86400)))
    sent = await ctx.spawn(
        "notify",
        [Child("send-notification", {"to": r, "order_id": order.order_id})
         for r in order.notify],
    )
    return {
        "order_id": order.order_id,
        "status": "delivered",
        "charge": charge,
        "carrier": delivered["data"].get("carrier"),
        "notified": [s["to"] for s in sent],
    }


@task("send-notification", retry=Retry(max_attempts=5, initial_delay=0.2))
def send_notification(ctx: Any, msg: dict[str, Any]) -> dict[str, Any]:
    # a plain (sync) function works too: it runs in a worker thread
    receipt = ctx.step.run("send", lambda: {"to": msg["to"], "channel": "email"})
    return receipt  # type: ignore[no-any-return]


FUNCTIONS = [fulfil_order, send_notification]
