"""The webhook verifiers against the providers' documented examples and schemes, and the
mapping of a delivery to an event."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest

from orchestrator.engine import webhooks as w
from orchestrator.errors import ApiError, TooLarge, Unauthorized

# GitHub's example (docs: "Validating webhook deliveries")
GH_SECRET = "It's a Secret to Everybody"
GH_BODY = b"Hello, World!"
GH_SIG = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# Slack's example (docs: "Verifying requests from Slack")
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TS = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&"
    b"channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&"
    b"command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2F"
    b"commands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&"
    b"trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
SLACK_SIG = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"


def stripe_header(secret: str, body: bytes, ts: int) -> str:
    """As Stripe signs: ``t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<body>">``."""
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def test_github_documented_example() -> None:
    w.verify_github(GH_SECRET, {"x-hub-signature-256": GH_SIG}, GH_BODY)
    with pytest.raises(Unauthorized):
        w.verify_github(GH_SECRET, {"x-hub-signature-256": GH_SIG}, GH_BODY + b" ")
    with pytest.raises(Unauthorized):
        w.verify_github("other", {"x-hub-signature-256": GH_SIG}, GH_BODY)
    with pytest.raises(Unauthorized) as exc:
        w.verify_github(GH_SECRET, {}, GH_BODY)
    assert exc.value.field == "X-Hub-Signature-256"


def test_slack_documented_example() -> None:
    headers = {"x-slack-signature": SLACK_SIG, "x-slack-request-timestamp": SLACK_TS}
    w.verify_slack(SLACK_SECRET, headers, SLACK_BODY, now=float(SLACK_TS) + 299)
    with pytest.raises(Unauthorized, match="tolerance"):  # a replay 5 minutes later
        w.verify_slack(SLACK_SECRET, headers, SLACK_BODY, now=float(SLACK_TS) + 301)
    with pytest.raises(Unauthorized, match="does not match"):
        w.verify_slack(SLACK_SECRET, {**headers, "x-slack-request-timestamp": "1531420619"},
                       SLACK_BODY, now=float(SLACK_TS))


def test_stripe_scheme_and_tolerance() -> None:
    body = b'{"id":"evt_1","type":"payment_intent.succeeded"}'
    sig = stripe_header("whsec_test", body, 1_700_000_000)
    w.verify_stripe("whsec_test", {"stripe-signature": sig}, body, 1_700_000_100)
    # several v1 (Stripe's during a secret roll): one matching is enough
    two = f"{sig.split(',')[0]},v1={'0' * 64},{sig.split(',')[1]}"
    w.verify_stripe("whsec_test", {"stripe-signature": two}, body, 1_700_000_100)
    with pytest.raises(Unauthorized, match="tolerance"):
        w.verify_stripe("whsec_test", {"stripe-signature": sig}, body, 1_700_000_301)
    w.verify_stripe("whsec_test", {"stripe-signature": sig}, body, 1_700_000_400,
                    tolerance=600)
    with pytest.raises(Unauthorized, match="does not match"):
        w.verify_stripe("whsec_other", {"stripe-signature": sig}, body, 1_700_000_000)
    with pytest.raises(Unauthorized, match="no t= and v1="):
        w.verify_stripe("whsec_test", {"stripe-signature": "v0=abc"}, body, 1_700_000_000)
    # the timestamp is signed: changing it breaks the signature
    forged = sig.replace("t=1700000000", "t=1700000100")
    with pytest.raises(Unauthorized, match="does not match"):
        w.verify_stripe("whsec_test", {"stripe-signature": forged}, body, 1_700_000_100)


@pytest.mark.parametrize("algorithm", w.ALGORITHMS)
@pytest.mark.parametrize("encoding", w.ENCODINGS)
def test_generic_hmac(algorithm: w.Algorithm, encoding: w.Encoding) -> None:
    body = b'{"a":1}'
    mac = hmac.new(b"k", body, getattr(hashlib, algorithm)).digest()
    value = "sig=" + (mac.hex() if encoding == "hex" else base64.b64encode(mac).decode())
    sig = w.Signature("X-My-Sig", algorithm, encoding, "sig=")
    w.verify_generic("k", {"x-my-sig": value}, body, sig)
    with pytest.raises(Unauthorized):
        w.verify_generic("k", {"x-my-sig": value[4:]}, body, sig)  # without the prefix
    with pytest.raises(Unauthorized):
        w.verify_generic("k2", {"x-my-sig": value}, body, sig)


def test_verify_tries_the_previous_secret_and_none_checks_nothing() -> None:
    headers = {"x-hub-signature-256": GH_SIG}
    w.verify("github", ["new", GH_SECRET], headers, GH_BODY, 0, w.Signature(), 300)
    with pytest.raises(Unauthorized):
        w.verify("github", ["new"], headers, GH_BODY, 0, w.Signature(), 300)
    with pytest.raises(Unauthorized):
        w.verify("github", [], headers, GH_BODY, 0, w.Signature(), 300)
    w.verify("none", [], {}, b"anything", 0, w.Signature(), 300)


def test_bodies_json_and_form() -> None:
    assert w.parse_body("application/json", b'{"a": {"b": 1}}') == {"a": {"b": 1}}
    assert w.parse_body("application/x-www-form-urlencoded; charset=utf-8",
                        b"a=1&b=x&b=y&c=") == {"a": "1", "b": ["x", "y"], "c": ""}
    payload = urlencode({"payload": json.dumps({"ref": "refs/heads/main"})}).encode()
    assert w.parse_body("application/x-www-form-urlencoded", payload) == {
        "ref": "refs/heads/main"}
    for ctype, body in (("application/json", b"{nope"), ("application/json", b"[1]"),
                        ("application/json", b'{"a": NaN}'), ("", b""),
                        ("application/json", b"[" * 100 + b"]" * 100),
                        ("application/x-www-form-urlencoded", b"payload=%7Bnope"),
                        ("application/x-www-form-urlencoded", b"\xff=1")):
        with pytest.raises(w.Malformed) as exc:
            w.parse_body(ctype, body)
        assert exc.value.status == 400 and exc.value.field == "body", body


def test_event_of_rules() -> None:
    headers = {"x-github-event": "push", "x-github-delivery": "72d3162e"}
    gh = w.DEFAULTS["github"]
    ev = w.event_of("src", gh.event, gh.id, headers, {"ref": "main"})
    assert ev == {"name": "github.push", "id": "src:72d3162e", "data": {"ref": "main"}}
    st = w.DEFAULTS["stripe"]
    ev = w.event_of("s", st.event, st.id, {}, {"id": "evt_1", "type": "charge.refunded"})
    assert (ev["name"], ev["id"]) == ("stripe.charge.refunded", "s:evt_1")
    nested = w.event_of("g", w.Rule("field", "event.kind", "app."), w.Rule("none"), {},
                        {"event": {"kind": "signup"}})
    assert nested["name"] == "app.signup" and "id" not in nested
    const = w.event_of("g", w.Rule("constant", "ping"), w.Rule("header", "X-Id"),
                       {"x-id": "x" * 500}, {})
    assert const["name"] == "ping" and len(const["id"]) == len("g:") + 64  # hashed
    with pytest.raises(ApiError) as exc:
        w.event_of("s", st.event, st.id, {}, {"id": "evt_1"})
    assert exc.value.status == 400 and exc.value.field == "body.type"
    with pytest.raises(ApiError) as exc:
        w.event_of("g", gh.event, gh.id, {"x-github-event": "push"}, {})
    assert exc.value.field == "header X-GitHub-Delivery"
    with pytest.raises(ApiError, match="event name"):
        w.event_of("g", w.Rule("field", "t"), w.Rule("none"), {}, {"t": "no spaces"})


def test_what_no_column_could_store_is_refused_not_a_500() -> None:
    with pytest.raises(w.Malformed):  # a lone surrogate
        w.parse_body("application/json", b'{"a": "\\ud800"}')
    with pytest.raises(w.Malformed):
        w.event_of("s", w.Rule("constant", "x"), w.Rule("field", "id"), {},
                   {"id": "a\x00b"})
    # a form whose fields grow past the event limit as JSON (\u0001 is 6 bytes for 3)
    with pytest.raises(TooLarge):
        w.parse_body("application/x-www-form-urlencoded", b"a=" + b"%01" * 50_000)
