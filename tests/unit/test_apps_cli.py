"""``orchestrator apps ...``: each command is the REST call it names (the calls themselves
run against a live orchestrator in tests/e2e/test_app_keys.py)."""

from __future__ import annotations

import pytest

from orchestrator import apps_cli
from orchestrator.cli import _parser


def call(*argv: str) -> tuple[str, str, object]:
    return apps_cli.request(_parser().parse_args(["apps", *argv]))


def test_each_command_is_its_rest_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DURABLE_NEW_SIGNING_KEY", raising=False)
    assert call("rotate-key", "shop") == ("POST", "/api/v1/apps/shop/keys", None)
    assert call("rotate-key", "shop", "--key", "k" * 20) == (
        "POST", "/api/v1/apps/shop/keys", {"key": "k" * 20})
    monkeypatch.setenv("DURABLE_NEW_SIGNING_KEY", "from-the-environment")
    assert call("rotate-key", "shop")[2] == {"key": "from-the-environment"}
    assert call("drop-fallback", "shop") == ("DELETE", "/api/v1/apps/shop/keys/fallback", None)
    assert call("budget", "shop", "1500") == ("PATCH", "/api/v1/apps/shop", {"budget_ms": 1500})
    assert call("budget", "shop", "default") == ("PATCH", "/api/v1/apps/shop",
                                                 {"budget_ms": None})
    monkeypatch.delenv("DURABLE_APP_SIGNING_KEY", raising=False)
    assert call("register", "http://h/api") == ("POST", "/api/v1/apps", {"url": "http://h/api"})
    assert call("register", "http://h/api", "--generate-key", "--budget-ms", "900") == (
        "POST", "/api/v1/apps", {"url": "http://h/api", "generate_key": True,
                                 "budget_ms": 900})
    monkeypatch.setenv("DURABLE_APP_SIGNING_KEY", "the-apps-own-key-0123")
    assert call("register", "http://h/api")[2] == {"url": "http://h/api",
                                                   "signing_key": "the-apps-own-key-0123"}


def test_a_budget_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(SystemExit):
        call("budget", "shop", "soon")


def test_the_app_id_is_one_path_segment() -> None:
    assert call("drop-fallback", "../runs")[1] == "/api/v1/apps/..%2Fruns/keys/fallback"
