"""Settings: types and bounds refused in one line naming the variable or flag, the
sources in their order (flags > environment > .env > defaults), the generated docs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator import cli, settings_doc
from orchestrator.config import BadSettings, Settings, env_names, flag_fields


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DURABLE_* of the test runner's, and a working directory without a .env."""
    for k in list(os.environ):
        if k.startswith("DURABLE_"):
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)


def _refusal(**env: str) -> str:
    mp = pytest.MonkeyPatch()
    try:
        for k, v in env.items():
            mp.setenv(k, v)
        with pytest.raises(BadSettings) as exc:
            Settings.load()
    finally:
        mp.undo()
    return str(exc.value)


def test_defaults() -> None:
    s = Settings.load()
    assert (s.database_url, s.host, s.port) == ("sqlite:///.durable/dev.db", "127.0.0.1", 8288)
    assert (s.call_timeout, s.lease_ttl, s.db_pool_size, s.keep_alive) == (60, 10, 40, 75)
    assert s.api_keys == [] and s.signing_key == "" and s.signing_key_fallback is None
    assert s.allow_insecure_app_urls is False and s.log_level == "info"
    assert s.budget_ms == 30_000
    assert (s.retention_days, s.retention_interval, s.retention_batch) == (0, 60, 500)
    assert s.model_fields_set == set()


def test_a_bad_number_is_named_in_one_line() -> None:
    assert _refusal(DURABLE_CALL_TIMEOUT="abc") == (
        "DURABLE_CALL_TIMEOUT: input should be a valid number, got 'abc'")


BAD_VALUES = [
    ("DURABLE_DASHBOARD_SESSION_MAX_AGE", "0", "greater than 0"),
    ("DURABLE_PORT", "0", "greater than or equal to 1"),
    ("DURABLE_PORT", "65536", "less than or equal to 65535"),
    ("DURABLE_PORT", "80.5", "valid integer"),
    ("DURABLE_CALL_TIMEOUT", "0", "greater than 0"),
    ("DURABLE_LEASE_TTL", "-1", "greater than 0"),
    ("DURABLE_MAX_INFLIGHT", "0", "greater than or equal to 1"),
    ("DURABLE_POOL_PER_APP", "0", "greater than or equal to 1"),
    ("DURABLE_POLL_INTERVAL", "0", "greater than 0"),
    ("DURABLE_NOTIFY_POLL_INTERVAL", "0", "greater than 0"),
    ("DURABLE_NOTIFY_POLL_INTERVAL", "601", "less than or equal to 600"),
    ("DURABLE_UNREACHABLE_TIMEOUT", "0", "greater than 0"),
    ("DURABLE_DELIVERY_BACKOFF_MAX", "0", "greater than 0"),
    ("DURABLE_CRON_GRACE", "-1", "greater than or equal to 0"),
    ("DURABLE_DB_CONNECT_WAIT", "-0.5", "greater than or equal to 0"),
    ("DURABLE_DB_POOL_SIZE", "0", "greater than or equal to 1"),
    ("DURABLE_KEEP_ALIVE", "0.5", "greater than or equal to 1"),
    ("DURABLE_MAX_BODY_BYTES", "0", "greater than or equal to 1"),
    ("DURABLE_MAX_CLOCK_SKEW", "0", "greater than 0"),
    ("DURABLE_MAX_CLOCK_SKEW", "3601", "less than or equal to 3600"),
    ("DURABLE_ALLOW_INSECURE_APP_URLS", "maybe", "valid boolean"),
    ("DURABLE_LOG_LEVEL", "loud", "'info'"),
    ("DURABLE_LOG_FORMAT", "xml", "'text' or 'json'"),
    ("DURABLE_METRICS_CACHE_SECONDS", "-1", "greater than or equal to 0"),
    ("DURABLE_METRICS_PUBLIC", "maybe", "valid boolean"),
    ("DURABLE_OTEL", "maybe", "valid boolean"),
    ("DURABLE_RETENTION_DAYS", "-1", "greater than or equal to 0"),
    ("DURABLE_RETENTION_DAYS", "3651", "less than or equal to 3650"),
    ("DURABLE_RETENTION_INTERVAL", "0", "greater than 0"),
    ("DURABLE_RETENTION_BATCH", "0", "greater than or equal to 1"),
    ("DURABLE_RETENTION_BATCH", "10001", "less than or equal to 10000"),
    ("DURABLE_DATABASE_URL", "sqlite:///:memory:", "a file"),
    ("DURABLE_DATABASE_URL", "sqlite://", "a file"),
    ("DURABLE_DATABASE_URL", "mysql://db/x", "postgresql:// or sqlite:///"),
]


@pytest.mark.parametrize(("var", "value", "problem"), BAD_VALUES)
def test_each_bound_is_refused(var: str, value: str, problem: str) -> None:
    out = _refusal(**{var: value})
    assert out.startswith(f"{var}: input should be ") and out.endswith(f", got {value!r}")
    assert problem in out


def test_every_bounded_field_is_tested() -> None:
    tested = {var for var, _, _ in BAD_VALUES}
    bounded = {env_names(n, f)[0] for n, f in Settings.model_fields.items()
               if any(hasattr(m, a) for m in f.metadata for a in ("gt", "ge", "lt", "le"))}
    assert bounded <= tested


def test_two_bad_values_are_both_named_on_one_line() -> None:
    out = _refusal(DURABLE_PORT="x", DURABLE_LEASE_TTL="0")
    assert "\n" not in out
    assert "DURABLE_PORT: " in out and "; DURABLE_LEASE_TTL: " in out


def test_a_bad_flag_is_named_as_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_PORT", "9000")  # fine: the flag's value is the bad one
    with pytest.raises(BadSettings, match=r"^--port: input should be greater than or "
                                          r"equal to 1, got '0'$"):
        Settings.load({"port": "0"})


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DURABLE_CALL_TIMEOUT", "DURABLE_SIGNING_KEY_FALLBACK", "DURABLE_PORT"):
        monkeypatch.setenv(var, "")
    s = Settings.load()
    assert (s.call_timeout, s.signing_key_fallback, s.port) == (60, None, 8288)


def test_api_keys_comma_separated_and_the_one_key_form(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.setenv("DURABLE_API_KEY", "solo")
    assert Settings.load().api_keys == ["solo"]
    monkeypatch.setenv("DURABLE_API_KEYS", "a,,b")
    assert Settings.load().api_keys == ["a", "b"]  # DURABLE_API_KEYS first
    assert Settings(api_keys=["k"]).api_keys == ["k"]  # by name, as tests build it


def test_booleans_and_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    for raw, want in (("1", True), ("true", True), ("yes", True), ("0", False),
                      ("false", False)):
        monkeypatch.setenv("DURABLE_ALLOW_INSECURE_APP_URLS", raw)
        assert Settings.load().allow_insecure_app_urls is want
    monkeypatch.setenv("DURABLE_LOG_LEVEL", "WARNING")
    assert Settings.load().log_level == "warning"
    assert Settings.load().log_format == "text"
    monkeypatch.setenv("DURABLE_LOG_FORMAT", "JSON")
    assert Settings.load().log_format == "json"


def test_dotenv_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# a comment\nDURABLE_LEASE_TTL=3\nAPP_PORT=1\n"
                                   "DURABLE_APP_ID=an-sdk-setting\n")
    s = Settings.load()
    assert s.lease_ttl == 3 and "lease_ttl" in s.model_fields_set


def test_a_bad_value_in_dotenv_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DURABLE_LEASE_TTL=-1\n")
    assert _refusal() == "DURABLE_LEASE_TTL (in .env): input should be greater than 0, got '-1'"


def test_precedence_flags_env_dotenv_defaults(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("DURABLE_PORT=1001\nDURABLE_HOST=0.0.0.0\n"
                                   "DURABLE_LEASE_TTL=4\n")
    monkeypatch.setenv("DURABLE_PORT", "1002")
    monkeypatch.setenv("DURABLE_HOST", "10.0.0.1")
    s = Settings.load({"port": "1003", "host": None})
    assert s.port == 1003  # flag over environment over .env
    assert s.host == "10.0.0.1"  # no flag: environment over .env
    assert s.lease_ttl == 4  # only in .env
    assert s.call_timeout == 60  # nowhere: the default


def test_a_named_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("DURABLE_PORT=1001\n")
    (tmp_path / "other.env").write_text("DURABLE_PORT=1004\n")
    (tmp_path / "third.env").write_text("DURABLE_PORT=1005\n")
    monkeypatch.setenv("DURABLE_ENV_FILE", str(tmp_path / "other.env"))
    assert Settings.load().port == 1004  # instead of ./.env
    assert Settings.load(env_file=str(tmp_path / "third.env")).port == 1005  # --env-file


def test_a_missing_named_env_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BadSettings, match=r"^--env-file: no such file: nope\.env$"):
        Settings.load(env_file="nope.env")
    monkeypatch.setenv("DURABLE_ENV_FILE", "gone.env")
    with pytest.raises(BadSettings, match=r"^DURABLE_ENV_FILE: no such file: gone\.env$"):
        Settings.load()


def test_keys_are_not_in_the_repr() -> None:
    s = Settings(api_keys=["api-secret"], signing_key="sign-secret",
                 signing_key_fallback="old-secret")
    assert "secret" not in repr(s)


def test_worker_id_is_one_per_settings_and_not_read_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DURABLE_WORKER_ID", "shared")
    a, b = Settings.load(), Settings.load()
    assert a.worker_id == a.worker_id != b.worker_id
    assert "shared" not in (a.worker_id, b.worker_id) and len(a.worker_id) == 12


def test_the_cli_has_a_flag_for_each_field_that_names_one() -> None:
    args = cli._parser().parse_args(
        ["serve", "--database-url", "sqlite:///x.db", "--host", "0.0.0.0", "--port", "9",
         "--call-timeout", "5", "--lease-ttl", "2", "--allow-insecure-apps",
         "--log-level", "debug", "--log-format", "json"])
    assert {f for f, _, _ in flag_fields()} <= set(vars(args))
    s = Settings.load({f: getattr(args, f) for f, _, _ in flag_fields()})
    assert (s.database_url, s.host, s.port, s.call_timeout, s.lease_ttl) == (
        "sqlite:///x.db", "0.0.0.0", 9, 5, 2)
    assert s.allow_insecure_app_urls is True and s.log_level == "debug"
    assert s.log_format == "json"


def test_serve_counts_a_database_url_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DURABLE_DATABASE_URL=sqlite:///y.db\n"
                                   "DURABLE_API_KEY=k\nDURABLE_SIGNING_KEY=s\n")
    s, keys_path = cli._settings(cli._parser().parse_args(["serve"]))
    assert (s.database_url, s.api_keys, s.signing_key, keys_path) == (
        "sqlite:///y.db", ["k"], "s", None)
    (tmp_path / ".env").write_text("DURABLE_API_KEY=k\nDURABLE_SIGNING_KEY=s\n")
    with pytest.raises(SystemExit, match="--database-url / DURABLE_DATABASE_URL"):
        cli._settings(cli._parser().parse_args(["serve"]))


def test_the_committed_settings_table_is_the_generated_one() -> None:
    committed = settings_doc.committed(settings_doc.DOC.read_text())
    assert committed == settings_doc.tables(), (
        "docs/configuration.md is out of date: run python -m orchestrator.settings_doc "
        "--write")


def test_the_table_lists_every_field_and_sdk_setting() -> None:
    table = settings_doc.tables()
    for name, info in Settings.model_fields.items():
        assert f"`{env_names(name, info)[0]}`" in table
    for var in ("DURABLE_ORCHESTRATOR_URL", "DURABLE_APP_ID", "DURABLE_MAX_CLOCK_SKEW"):
        assert f"| `{var}` |" in table
    assert "| `DURABLE_PORT` | `--port` | integer >= 1, <= 65535 | `8288` |" in table
