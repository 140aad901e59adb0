"""infra/: the Dockerfile, the compose file and the Kubernetes manifests parse, name real
settings, real commands and real probe routes; hadolint and kubernetes-validate accept
them (when installed: `.ci/run` installs both)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from orchestrator.api.route_table import OPERATIONS
from orchestrator.app import create_app
from orchestrator.cli import _parser
from orchestrator.config import Settings, env_names
from orchestrator.settings_doc import SDK_SETTINGS
from orchestrator.store.db import Database

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
SETTINGS_VARS = {n for name, info in Settings.model_fields.items()
                 for n in env_names(name, info)}
SDK_VARS = {var for var, *_ in SDK_SETTINGS}


# -- reading the files -------------------------------------------------------------------

def dockerfile_stages(path: Path = INFRA / "Dockerfile") -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions (keyword, arguments), continuation lines joined."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        if raw.lstrip().startswith("#") and not pending:
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        if pending or raw.strip():
            lines.append(pending + raw)
        pending = ""
    stages: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in lines:
        keyword, _, rest = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(
                len(stages))
            current = stages.setdefault(name, [])
            current.append(("FROM", parts[0]))
            continue
        current.append((keyword.upper(), rest.strip()))
    return stages


def stage_config(stage: str) -> dict[str, Any]:
    """A stage's ENTRYPOINT, CMD, HEALTHCHECK command, USER, ENV, EXPOSE, following its
    FROM chain (as Docker does: the last one set wins)."""
    stages = dockerfile_stages()
    chain: list[str] = []
    name: str | None = stage
    while name in stages:
        chain.insert(0, name)
        name = stages[name][0][1]
    out: dict[str, Any] = {"env": {}, "expose": []}
    for s in chain:
        for keyword, rest in stages[s]:
            if keyword in ("ENTRYPOINT", "CMD"):
                out[keyword.lower()] = json.loads(rest)  # the exec form only
            elif keyword == "HEALTHCHECK":
                out["healthcheck"] = json.loads(rest[rest.index("CMD ") + 4:])
            elif keyword == "USER":
                out["user"] = rest
            elif keyword == "ENV":
                out["env"].update(dict(kv.split("=", 1) for kv in shlex.split(rest)))
            elif keyword == "EXPOSE":
                out["expose"] += rest.split()
    return out


def compose() -> dict[str, Any]:
    data = yaml.safe_load((INFRA / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def k8s_docs() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            yield path.name, doc


def k8s(kind: str) -> dict[str, Any]:
    (doc,) = [d for _, d in k8s_docs() if d["kind"] == kind]
    return doc


def env_example() -> dict[str, str]:
    out = {}
    for line in (INFRA / ".env.example").read_text().splitlines():
        k, sep, v = line.partition("=")
        if sep and not k.startswith("#"):
            out[k.strip()] = v.strip()
    return out


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``."""
    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if env.get(name):
            return env[name]
        if op == ":-":
            return arg or ""
        raise AssertionError(f"{name} is unset: {arg}")
    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", sub, value)


def orchestrator_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items()
            if svc.get("build", {}).get("target") == "orchestrator"}


def url_path(command: list[str] | str) -> tuple[int, str]:
    """The port and path a healthcheck command's URL names."""
    text = command if isinstance(command, str) else " ".join(command)
    m = re.search(r"http://127\.0\.0\.1:(?:(\d+)|%s)(/[\w/]*)", text)
    assert m, f"no URL in {text!r}"
    return int(m.group(1) or 8000), m.group(2)


# -- the files parse and hold what they should ---------------------------------------------

def test_k8s_manifests_parse_with_the_expected_kinds() -> None:
    kinds = sorted(d["kind"] for _, d in k8s_docs())
    assert kinds == sorted(["ConfigMap", "Deployment", "Job", "PodDisruptionBudget",
                            "Secret", "Service"])
    for name, doc in k8s_docs():
        assert "namespace" not in doc["metadata"], f"{name}: namespace-agnostic"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_k8s_deployment_service_and_budget_agree() -> None:
    dep = k8s("Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 3
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert k8s("Service")["spec"]["selector"].items() <= labels.items()
    pdb = k8s("PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable") == 1
    (container,) = spec["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert k8s("Service")["spec"]["ports"][0]["targetPort"] in ports
    # the port the container listens on is the one the ConfigMap sets
    assert ports["http"] == int(k8s("ConfigMap")["data"]["DURABLE_PORT"])
    # non-root, the image's user; the same image for the migration
    uid = int(stage_config("orchestrator")["user"].split(":")[0])
    for pod in (spec["template"]["spec"], k8s("Job")["spec"]["template"]["spec"]):
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid == 10001
        (c,) = pod["containers"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["image"] == container["image"]
    assert k8s("Job")["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_compose_services_and_their_order() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "migrate", "orchestrator-1", "orchestrator-2",
                             "example-app"}
    pg = services["postgres"]
    assert pg["image"] == "postgres:15"
    assert any(v.endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("orchestrator-1", "orchestrator-2"):
        deps = services[name]["depends_on"]
        assert deps["postgres"] == {"condition": "service_healthy"}
        assert deps["migrate"] == {"condition": "service_completed_successfully"}
    # each image is a stage of the Dockerfile, as a non-root user
    stages = dockerfile_stages()
    for svc in services.values():
        if "build" in svc:
            assert svc["build"]["dockerfile"] == "infra/Dockerfile"
            assert (INFRA / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
            assert svc["build"]["target"] in stages
            assert stage_config(svc["build"]["target"])["user"] == "10001:10001"
    # replica 1 registers the app at the URL the app serves its endpoint on
    app_url = services["orchestrator-1"]["command"][2]
    assert app_url == "http://example-app:8000/api/durable"
    assert stage_config("example-app")["cmd"][0] == "examples.functions.app:app"


def test_dockerfile_image_shape() -> None:
    stages = dockerfile_stages()
    assert list(stages)[-1] == "orchestrator", "the default target is the orchestrator"
    roots = {name: inst[0][1] for name, inst in stages.items() if inst[0][1] not in stages}
    assert roots == {"builder": "${PYTHON_IMAGE}", "base": "${PYTHON_IMAGE}"}
    assert 'ARG PYTHON_IMAGE=python:3.11-slim' in (INFRA / "Dockerfile").read_text()
    cfg = stage_config("orchestrator")
    assert cfg["entrypoint"] == ["orchestrator"]
    assert cfg["cmd"][0] == "serve"
    assert cfg["user"] == "10001:10001"
    assert cfg["env"]["DURABLE_HOST"] == "0.0.0.0"
    assert cfg["expose"] == [cfg["env"]["DURABLE_PORT"]] == ["8000"]
    # the wheel is built in the builder stage; the image installs it without an index
    builder = " ".join(rest for _, rest in stages["builder"])
    assert "pip wheel" in builder
    base = " ".join(rest for _, rest in stages["base"])
    assert "--no-index" in base and "useradd" in base and "--uid 10001" in base


# -- names in the files are real settings and real commands --------------------------------

def test_orchestrator_env_names_are_settings() -> None:
    names: dict[str, set[str]] = {
        "Dockerfile": {k for k in stage_config("orchestrator")["env"]
                       if k.startswith("DURABLE_")},
        "ConfigMap": set(k8s("ConfigMap")["data"]),
        "Secret": set(k8s("Secret")["stringData"]),
        **{f"compose {n}": set(s["environment"]) for n, s in orchestrator_services().items()},
        ".env.example": {k for k in env_example() if k.startswith("DURABLE_")},
    }
    for where, found in names.items():
        assert found, where
        assert found <= SETTINGS_VARS, f"{where}: not settings: {found - SETTINGS_VARS}"
    required = {"DURABLE_DATABASE_URL", "DURABLE_API_KEYS", "DURABLE_SIGNING_KEY"}
    assert required <= names["Secret"]
    for n in orchestrator_services():
        assert required <= names[f"compose {n}"]
    # the example app reads the SDK's variables, and the example's own delays
    app_env = set(compose()["services"]["example-app"]["environment"])
    orders = (ROOT / "examples/functions/orders.py").read_text()
    for var in app_env:
        assert var in SDK_VARS or (var.startswith("ORDERS_") and f'"{var}"' in orders), var
    # .env.example names only what the compose file interpolates
    text = (INFRA / "docker-compose.yml").read_text()
    for var in env_example():
        assert "${" + var in text, var


def test_the_values_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap and Secret, and the compose environment with .env.example's values,
    load as settings (`serve` would start on them)."""
    k8s_env = {**k8s("ConfigMap")["data"], **k8s("Secret")["stringData"]}
    compose_env = {k: interpolate(str(v), env_example())
                   for k, v in orchestrator_services()["orchestrator-2"]["environment"].items()}
    for env in (k8s_env, {**stage_config("orchestrator")["env"], **compose_env}):
        for k in list(SETTINGS_VARS):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        s = Settings.load(env_file=None)
        assert (s.host, s.port) == ("0.0.0.0", 8000)
        assert s.database_url.startswith("postgresql://")
        assert s.api_keys and s.signing_key
    assert compose_env["DURABLE_DATABASE_URL"] == (
        "postgresql://durable:replace-me-postgres-password@postgres:5432/durable")


def test_commands_are_real_cli_commands() -> None:
    parser = _parser()
    commands = [stage_config("orchestrator")["cmd"],
                k8s("Deployment")["spec"]["template"]["spec"]["containers"][0]["args"],
                *(s["command"] for n, s in orchestrator_services().items() if n != "migrate")]
    for argv in commands:
        assert parser.parse_args(argv).command == "serve", argv
    migrate = [compose()["services"]["migrate"]["command"],
               k8s("Job")["spec"]["template"]["spec"]["containers"][0]["args"]]
    assert migrate == [["migrate"], ["migrate"]]
    assert parser.parse_args(["migrate"]).command == "migrate"


# -- the probes point at real routes -------------------------------------------------------

def probe_paths() -> dict[str, str]:
    """Where each probe or healthcheck of the orchestrator looks: name -> path."""
    out = {}
    (c,) = k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        out[f"k8s {probe}"] = c[probe]["httpGet"]["path"]
        assert c[probe]["httpGet"]["port"] == "http"
    for name, svc in orchestrator_services().items():
        if not svc.get("healthcheck", {}).get("disable"):
            port, out[f"compose {name}"] = url_path(svc["healthcheck"]["test"])
            assert port == 8000
    port, out["Dockerfile HEALTHCHECK"] = url_path(stage_config("orchestrator")["healthcheck"])
    assert port == 8000
    return out


def test_probe_paths_are_public_get_routes() -> None:
    paths = probe_paths()
    assert paths["k8s readinessProbe"] == "/readyz"
    assert paths["k8s livenessProbe"] == paths["k8s startupProbe"] == "/healthz"
    public_gets = {op.path for op in OPERATIONS if op.method == "get" and op.public}
    assert set(paths.values()) <= public_gets


async def test_probe_paths_answer_without_a_key(tmp_path: Path) -> None:
    """Each probe path, GET without a key (a probe has none) on the real app, started."""
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/probe.db",
                              api_keys=["k"], signing_key="s"))
    transport = httpx.ASGITransport(app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=transport, base_url="http://t") as c:
        for where, path in probe_paths().items():
            r = await c.get(path)
            expected = {200, 503} if path == "/readyz" else {200}
            assert r.status_code in expected, (where, path, r.status_code, r.text)
        assert (await c.get("/readyz")).json() == {"status": "ready"}
        assert (await c.get("/no-such-probe")).status_code == 404  # the check can fail


# -- linters ---------------------------------------------------------------------------------

def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    assert found is not None, f"{name} is not installed (the dev extra installs it)"
    return found


def test_hadolint_accepts_the_dockerfile() -> None:
    done = subprocess.run([tool("hadolint"), str(INFRA / "Dockerfile")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    # it does lint: an unpinned apt-get install is refused
    bad = subprocess.run([tool("hadolint"), "-"], input="FROM python:3.11-slim\n"
                         "RUN apt-get update && apt-get install -y curl\n",
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "DL3008" in bad.stdout


def test_kubernetes_validate_accepts_the_manifests(tmp_path: Path) -> None:
    files = [str(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"]
    done = subprocess.run([tool("kubernetes-validate"), "--strict", *files],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == len(files)
    # it does validate: a probe's port of the wrong type is refused
    bad = tmp_path / "bad.yaml"
    bad.write_text((K8S / "deployment.yaml").read_text().replace(
        "periodSeconds: 10", "periodSeconds: ten"))
    refused = subprocess.run([tool("kubernetes-validate"), "--strict", str(bad)],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "ten" in refused.stdout + refused.stderr


# -- the pool fits max_connections (docs/operations.md) --------------------------------------

def per_replica(pool_size: int) -> int:
    """Connections one replica may hold: its pool and the pool's overflow, read from the
    engine ``store/db.py`` builds (no connection is made)."""
    db = Database("postgresql://u@127.0.0.1:1/d", pool_size=pool_size)
    assert db._engine is not None
    pool = db._engine.pool
    return int(pool.size()) + int(pool._max_overflow)  # type: ignore[attr-defined]


def test_documented_overflow_is_the_code_s() -> None:
    for size in (1, 8, 16, 40):
        assert per_replica(size) == size + max(2, size // 4)
    doc = (ROOT / "docs/operations.md").read_text()
    assert "DURABLE_DB_POOL_SIZE + max(2, DURABLE_DB_POOL_SIZE // 4)" in doc
    assert f"one replica takes {per_replica(Settings().db_pool_size)} connections" in doc


def test_manifests_pools_fit_max_connections() -> None:
    """(replicas + surge) x per replica + the migration (2) + headroom (10) <= 100 (the
    server's default), for the Kubernetes manifests and the compose file."""
    dep = k8s("Deployment")["spec"]
    surge = dep["strategy"]["rollingUpdate"]["maxSurge"]
    pool = int(k8s("ConfigMap")["data"]["DURABLE_DB_POOL_SIZE"])
    assert (dep["replicas"] + surge) * per_replica(pool) + 2 + 10 <= 100
    pg = compose()["services"]["postgres"]["command"]
    max_connections = int(next(a.split("=")[1] for a in pg if a.startswith("max_conn")))
    pool = int(interpolate(
        orchestrator_services()["orchestrator-1"]["environment"]["DURABLE_DB_POOL_SIZE"],
        env_example()))
    replicas = [s for s in orchestrator_services().values() if s["command"][0] == "serve"]
    assert len(replicas) == 2
    assert len(replicas) * per_replica(pool) + 2 + 10 <= max_connections
