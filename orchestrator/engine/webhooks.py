"""Webhook deliveries, as pure functions: verifying a delivery's signature as its provider
signs it, reading its body (JSON or form-encoded) and mapping it to an event (name, id,
data). No user code is evaluated: a rule selects a header, a dotted body field or a
constant. ``webhook_sources`` stores the sources and hands deliveries to ``ingest``.

Every check compares in constant time (``hmac.compare_digest``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, get_args
from urllib.parse import parse_qsl

from orchestrator.engine import answers as a
from orchestrator.errors import ApiError, TooLarge, Unauthorized
from sdk import protocol as p

Kind = a.WebhookKind
Algorithm = a.HashAlgorithm
ALGORITHMS: Final[tuple[Algorithm, ...]] = get_args(Algorithm)
Encoding = a.DigestEncoding
ENCODINGS: Final[tuple[Encoding, ...]] = get_args(Encoding)

#: Stripe's and Slack's default timestamp tolerance (seconds), as their libraries use.
DEFAULT_TOLERANCE: Final = 300.0
#: The largest delivery body read (a larger one is 413): the largest event's data.
MAX_DELIVERY_BYTES: Final = p.MAX_EVENT_BYTES
#: A longer delivery id is replaced by its SHA-256 (event ids are at most 256 characters).
MAX_DELIVERY_ID: Final = 128


class Malformed(ApiError):
    """A delivery whose body (or a header the mapping reads) cannot become an event: 400."""

    status = 400
    code = "bad_request"


@dataclass(frozen=True)
class Rule:
    """Where a value comes from: a header, a dotted body field, a constant (``key`` is the
    header's name, the path, or the constant); ``prefix`` goes before it."""

    source: str
    key: str = ""
    prefix: str = ""


@dataclass(frozen=True)
class Signature:
    """A generic source's HMAC: the header it is in, the hash, its encoding, and a prefix
    the header's value starts with (``sha256=``)."""

    header: str = "X-Signature"
    algorithm: Algorithm = "sha256"
    encoding: Encoding = "hex"
    prefix: str = ""


@dataclass(frozen=True)
class Defaults:
    event: Rule
    id: Rule


#: Per kind, the event name and delivery id rules a source gets unless it declares its own.
DEFAULTS: Final[Mapping[Kind, Defaults]] = {
    "github": Defaults(Rule("header", "X-GitHub-Event", "github."),
                       Rule("header", "X-GitHub-Delivery")),
    "stripe": Defaults(Rule("field", "type", "stripe."), Rule("field", "id")),
    "slack": Defaults(Rule("constant", "command", "slack."), Rule("field", "trigger_id")),
}


# -- signatures ----------------------------------------------------------------------------

def _hmac_hex(secret: str, message: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(secret.encode(), message, getattr(hashlib, algorithm)).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _header(headers: Mapping[str, str], name: str) -> str:
    """A header the check needs (``headers`` has lower-case names), else 401."""
    value = headers.get(name.lower())
    if not value:
        raise Unauthorized(f"missing signature header {name!r}", name)
    return value


def verify_generic(secret: str, headers: Mapping[str, str], body: bytes,
                   sig: Signature) -> None:
    """``sig.header`` is ``sig.prefix`` + the HMAC of the raw body, hex or base64."""
    got = _header(headers, sig.header)
    mac = hmac.new(secret.encode(), body, getattr(hashlib, sig.algorithm)).digest()
    want = mac.hex() if sig.encoding == "hex" else base64.b64encode(mac).decode()
    if not got.startswith(sig.prefix) or not _same(got[len(sig.prefix):], want):
        raise Unauthorized("signature does not match", sig.header)


def verify_github(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>``."""
    verify_generic(secret, headers, body,
                   Signature("X-Hub-Signature-256", "sha256", "hex", "sha256="))


def _fresh(ts: str, now: float, tolerance: float, header: str) -> None:
    try:
        t = float(ts)
    except ValueError:
        raise Unauthorized(f"{header}: timestamp {ts[:40]!r} is not a number", header) from None
    if not math.isfinite(t) or abs(now - t) > tolerance:
        raise Unauthorized(f"{header}: timestamp is outside the tolerance of "
                           f"{tolerance:g} s", header)


def verify_stripe(secret: str, headers: Mapping[str, str], body: bytes, now: float,
                  tolerance: float = DEFAULT_TOLERANCE) -> None:
    """``Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">[,v1=...]``: one
    ``v1`` must match, and ``t`` be within ``tolerance`` of ``now``."""
    name = "Stripe-Signature"
    parts = [item.partition("=") for item in _header(headers, name).split(",")]
    ts = [v.strip() for k, _, v in parts if k.strip() == "t"]
    v1 = [v.strip() for k, _, v in parts if k.strip() == "v1"]
    if len(ts) != 1 or not v1:
        raise Unauthorized(f"{name} has no t= and v1=", name)
    want = _hmac_hex(secret, ts[0].encode() + b"." + body)
    if not any([_same(v, want) for v in v1]):  # a list: compare every one, constant time
        raise Unauthorized("signature does not match", name)
    _fresh(ts[0], now, tolerance, name)


def verify_slack(secret: str, headers: Mapping[str, str], body: bytes, now: float,
                 tolerance: float = DEFAULT_TOLERANCE) -> None:
    """``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<ts>:<body>">`` with the ts of
    ``X-Slack-Request-Timestamp``, within ``tolerance`` of ``now``."""
    ts = _header(headers, "X-Slack-Request-Timestamp")
    got = _header(headers, "X-Slack-Signature")
    want = "v0=" + _hmac_hex(secret, b"v0:" + ts.encode() + b":" + body)
    if not _same(got, want):
        raise Unauthorized("signature does not match", "X-Slack-Signature")
    _fresh(ts, now, tolerance, "X-Slack-Request-Timestamp")


def verify(kind: Kind, secrets: list[str], headers: Mapping[str, str], body: bytes,
           now: float, sig: Signature, tolerance: float) -> None:
    """Check a delivery against each of ``secrets`` (the current one, then the previous
    during its grace): ``Unauthorized`` unless one verifies. Kind "none" checks nothing."""
    if kind == "none":
        return
    error: Unauthorized | None = None
    for secret in secrets:
        try:
            if kind == "github":
                verify_github(secret, headers, body)
            elif kind == "stripe":
                verify_stripe(secret, headers, body, now, tolerance)
            elif kind == "slack":
                verify_slack(secret, headers, body, now, tolerance)
            else:
                verify_generic(secret, headers, body, sig)
            return
        except Unauthorized as exc:
            error = error or exc
    raise error or Unauthorized("the source has no secret")


# -- bodies and events ---------------------------------------------------------------------

def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json(raw: bytes | str) -> Any:
    try:
        value = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise Malformed(f"body nests deeper than {p.MAX_JSON_DEPTH} levels", "body") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Malformed(f"body is not valid JSON: {exc}", "body") from None
    return value


def _storable(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` if it can be an event's data: finite numbers, valid Unicode, at most
    ``MAX_JSON_DEPTH`` deep (else 400) and at most ``MAX_EVENT_BYTES`` encoded (else 413)."""
    try:
        size = len(p.dumps_value(data))
    except (TypeError, ValueError) as exc:
        raise Malformed(f"body is not a JSON value the API takes: {exc}", "body") from None
    if size > p.MAX_EVENT_BYTES:
        raise TooLarge(f"body is {size} bytes as event data; the limit is "
                       f"{p.MAX_EVENT_BYTES}", "body")
    return data


def parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    """The body as event data: a JSON object, or a form's fields (a repeated field: a
    list). A form of one ``payload`` field holding JSON (GitHub's form deliveries, Slack's
    interactions) is that JSON."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError) as exc:
            raise Malformed(f"body is not a valid form: {exc}", "body") from None
        form: dict[str, Any] = {}
        for k, v in pairs:
            old = form.get(k)
            form[k] = v if old is None else [*old, v] if isinstance(old, list) else [old, v]
        if list(form) == ["payload"] and isinstance(form["payload"], str):
            value = _json(form["payload"])
        else:
            return _storable(form)
    else:
        value = _json(body)
    if not isinstance(value, dict):
        raise Malformed("body must be a JSON object", "body")
    return _storable(value)


def _select(rule: Rule, headers: Mapping[str, str], data: Mapping[str, Any],
            what: str) -> str | None:
    if rule.source == "constant":
        return rule.key
    if rule.source == "header":
        value: Any = headers.get(rule.key.lower())
        where = f"header {rule.key}"
    elif rule.source == "field":
        value = p.lookup(data, rule.key)
        where = f"body.{rule.key}"
    else:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise Malformed(f"the {what} is read from {where}, which is missing or not a "
                        "string", where)
    out = str(value)
    if "\x00" in out or not out.isprintable():
        raise Malformed(f"the {what} in {where} holds a control character", where)
    return out


def event_of(source_id: str, event: Rule, id_rule: Rule, headers: Mapping[str, str],
             data: dict[str, Any]) -> dict[str, Any]:
    """The event a delivery becomes: its name by ``event``, its id (the idempotency key)
    ``<source id>:<delivery id>`` by ``id_rule`` (none: a new id), the body as data."""
    name = event.prefix + str(_select(event, headers, data, "event name"))
    if not p.EVENT_NAME_RE.match(name):
        raise Malformed(f"event name {name[:140]!r} is not 1-128 of letters, digits, '_', "
                        "'-', '.', ':'", "body")
    out: dict[str, Any] = {"name": name, "data": data}
    delivery = _select(id_rule, headers, data, "delivery id")
    if delivery is not None:
        if len(delivery) > MAX_DELIVERY_ID:  # still one id per delivery, short enough
            delivery = hashlib.sha256(delivery.encode()).hexdigest()
        out["id"] = f"{source_id}:{delivery}"
    return out
