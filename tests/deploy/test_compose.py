"""deploy/compose.yaml (the production shape) checked without Docker, which cannot run here.

The file is parsed with PyYAML (merge keys included) and checked against the official
Compose specification's JSON schema (the copy check-jsonschema ships, a pinned [dev]
dependency), then against rules the schema cannot state: build targets exist in the
Dockerfile, every mounted file exists, every command names a console script of pyproject.toml
(and parses with its argument parser) or a binary of the named image, every variable a Herald
service sets is one of its settings, published ports are unique, ``depends_on`` names existing
services that have the health check their condition waits for. The HAProxy config passes
``haproxy -c`` and keeps every fixed line of deploy/haproxy.cfg.template; the Prometheus config
passes ``promtool check config`` and scrapes every Herald process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from herald_contract.redis_urls import parse_sentinel_url
from launch.hosts import FleetHost, HostsError, haproxy_binary
from qasite.__main__ import _parser as qa_parser
from qasite.core.settings import Settings as QaSettings
from socketsrv.__main__ import _parser as fleet_parser
from socketsrv.settings import Settings as FleetSettings
from tests.support.haproxy import loopback_hosts

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"

# What each image the file names ships (checked against the images' documentation: the
# official redis, postgres and haproxy images are Debian-based, Prometheus's and Grafana's
# carry busybox's wget). A command or a health check may only call these.
IMAGE_BINARIES: dict[str, set[str]] = {
    "redis": {"redis-server", "redis-sentinel", "redis-cli", "sh", "bash"},
    "postgres": {"postgres", "pg_isready", "psql", "sh", "bash"},
    "haproxy": {"haproxy", "sh", "bash"},
    "prom/prometheus": {"prometheus", "promtool", "wget", "sh"},
    "grafana/grafana": {"grafana", "grafana-server", "grafana-cli", "wget", "sh"},
}
# Built images: the Dockerfile's venv, on the PATH (python, pip and the console scripts).
BUILT_BINARIES = {"python", "pip"}
# Variables a Herald service may set beyond HERALD_* / HERALD_QA_* settings.
SHARED_NAMES = {"REDIS_URL", "DATABASE_URL"}


def load_compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = load_compose()["services"]
    return found


def herald_services() -> dict[str, dict[str, Any]]:
    """The services built from this repository's Dockerfile."""
    return {name: svc for name, svc in services().items() if "build" in svc}


def image_name(service: dict[str, Any]) -> str:
    """The image without its tag: ``prom/prometheus:v2.42.0`` -> ``prom/prometheus``."""
    return str(service["image"]).rsplit(":", 1)[0]


def as_list(command: str | list[str]) -> list[str]:
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def dockerfile_stages() -> dict[str, list[str]]:
    """Each ``FROM ... AS name`` stage's instruction lines (continuations joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(1), [])
        elif line.strip() and not line.lstrip().startswith("#"):
            current.append(line.strip())
    return stages


def stage_entrypoint(target: str) -> list[str]:
    """The exec-form ENTRYPOINT of a Dockerfile stage."""
    lines = [line for line in dockerfile_stages()[target] if line.startswith("ENTRYPOINT")]
    assert lines, f"Dockerfile stage {target} has no ENTRYPOINT"
    entrypoint: list[str] = json.loads(lines[-1].removeprefix("ENTRYPOINT").strip())
    return entrypoint


def console_scripts() -> dict[str, str]:
    scripts: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    return scripts


def bind_sources(service: dict[str, Any]) -> list[str]:
    """The host paths of a service's bind mounts (short syntax starting with . or /, or long
    syntax of type bind); named volumes are not files."""
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                sources.append(source)
        elif volume.get("type") == "bind":
            sources.append(volume["source"])
    return sources


def compose_spec_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_spec_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def test_the_file_is_valid_under_the_compose_specification_schema() -> None:
    assert not schema_errors(load_compose())


def test_the_schema_check_rejects_what_compose_would() -> None:
    broken = load_compose()
    broken["services"]["site"]["imagee"] = "typo"
    broken["services"]["fleet-1"]["depends_on"]["sentinel-1"]["condition"] = "service_up"
    errors = schema_errors(broken)
    assert any(error.startswith("services/site") for error in errors), errors
    assert any(error.startswith("services/fleet-1/depends_on") for error in errors), errors


def test_the_production_shape_is_all_there() -> None:
    found = services()
    for name in (
        "redis-primary",
        "redis-replica",
        "sentinel-1",
        "sentinel-2",
        "sentinel-3",
        "postgres",
        "fleet-1",
        "fleet-2",
        "site",
        "haproxy",
        "prometheus",
        "grafana",
    ):
        assert name in found, f"no service {name}"
    targets = {name: svc["build"]["target"] for name, svc in herald_services().items()}
    assert targets == {"fleet-1": "fleet", "fleet-2": "fleet", "site": "site"}


def test_every_service_has_an_image_or_a_build() -> None:
    for name, service in services().items():
        assert "image" in service or "build" in service, name


def test_build_contexts_and_targets_exist_in_the_dockerfile() -> None:
    stages = dockerfile_stages()
    for name, service in herald_services().items():
        build = service["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        assert build["target"] in stages, f"{name}: no stage {build['target']} in the Dockerfile"


def test_every_file_mounted_or_referenced_exists() -> None:
    for name, service in services().items():
        for source in bind_sources(service):
            assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"]).is_dir(), name
    for kind in ("secrets", "configs"):
        for name, spec in (load_compose().get(kind) or {}).items():
            if "file" in spec:
                assert (DEPLOY / spec["file"]).exists(), f"{kind} {name}: {spec['file']}"


def test_every_herald_command_names_a_console_script_and_parses() -> None:
    scripts = console_scripts()
    parsers = {"herald-socketsrv": fleet_parser, "herald-qa": qa_parser}
    for name, service in herald_services().items():
        entrypoint = as_list(
            service.get("entrypoint") or stage_entrypoint(service["build"]["target"])
        )
        assert entrypoint[0] in scripts, f"{name}: {entrypoint[0]} is no console script"
        arguments = entrypoint[1:] + as_list(service.get("command", []))
        parsers[entrypoint[0]]().parse_args(arguments)  # SystemExit on an unknown argument


def test_every_other_command_names_a_binary_of_its_image() -> None:
    for name, service in services().items():
        if "build" in service:
            continue
        binaries = IMAGE_BINARIES[image_name(service)]
        command = as_list(service.get("entrypoint") or service.get("command") or ["-"])
        # Arguments only (starting with -) go to the image's own entrypoint.
        assert command[0].startswith("-") or command[0] in binaries, f"{name}: {command[0]}"


def test_every_service_has_a_health_check_calling_a_binary_it_has() -> None:
    for name, service in services().items():
        check = service.get("healthcheck")
        assert check, f"{name} has no health check"
        test = as_list(check["test"])
        assert test[0] == "CMD", f"{name}: exec form expected, not {test[0]}"
        binaries = BUILT_BINARIES if "build" in service else IMAGE_BINARIES[image_name(service)]
        assert test[1] in binaries, f"{name}: {test[1]} is not in its image"


def test_herald_services_check_their_readiness() -> None:
    for name, service in herald_services().items():
        assert "/readyz" in " ".join(as_list(service["healthcheck"]["test"])), name


def allowed_herald_variables() -> set[str]:
    names = set(SHARED_NAMES)
    for settings in (FleetSettings, QaSettings):
        for field in settings.model_fields:
            names.update(settings.env_names(field))
            if field.endswith("_pem"):
                names.add(settings.ENV_PREFIX + field.removesuffix("_pem").upper() + "_FILE")
    return names


def test_every_variable_a_herald_service_sets_is_a_setting() -> None:
    allowed = allowed_herald_variables()
    assert {"HERALD_QA_ENVIRONMENT", "HERALD_JWT_PUBLIC_KEY_FILE", "REDIS_URL"} <= allowed
    for name, service in herald_services().items():
        unknown = sorted(set(service.get("environment", {})) - allowed)
        assert not unknown, f"{name} sets variables that are no setting: {unknown}"


def test_the_site_runs_in_production_with_its_secrets() -> None:
    environment = services()["site"]["environment"]
    assert environment["HERALD_QA_ENVIRONMENT"] == "production"
    # What production requires (qasite.core.settings), each from a variable or a file.
    assert "HERALD_QA_ACCESS_TOKEN_SECRET" in environment
    assert "HERALD_QA_SOCKET_PRIVATE_KEY_FILE" in environment
    assert "HERALD_QA_SOCKET_PUBLIC_KEY_FILE" in environment
    assert environment["DATABASE_URL"].startswith("postgresql://")


def test_secret_files_are_the_services_own_secrets() -> None:
    declared = set(load_compose()["secrets"])
    for name, service in services().items():
        own = {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}
        assert own <= declared, name
        for value in (service.get("environment") or {}).values():
            if str(value).startswith("/run/secrets/"):
                assert str(value).removeprefix("/run/secrets/") in own, f"{name}: {value}"


def test_the_redis_url_names_the_sentinels_and_their_service() -> None:
    sentinel_conf = (DEPLOY / "compose" / "redis" / "sentinel.conf").read_text()
    monitored = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", sentinel_conf, re.M)
    assert monitored, "sentinel.conf monitors nothing"
    assert monitored.group(2) in services()
    for name, service in herald_services().items():
        url = parse_sentinel_url(service["environment"]["HERALD_REDIS_URL"])
        assert url.service_name == monitored.group(1), name
        hosts = {host for host, port in url.sentinels}
        assert hosts == {"sentinel-1", "sentinel-2", "sentinel-3"}, name
        assert all(port == 26379 for host, port in url.sentinels), name


def test_published_ports_are_unique() -> None:
    published: list[str] = []
    for service in services().values():
        for port in service.get("ports", []):
            parts = str(port).split(":")
            published.append(":".join(parts[:-1]))  # [address:]host port
    host_ports = [entry.rsplit(":", 1)[-1] for entry in published]
    assert len(host_ports) == len(set(host_ports)), published


def test_depends_on_names_services_with_the_checks_it_waits_for() -> None:
    found = services()
    for name, service in found.items():
        for dependency, spec in (service.get("depends_on") or {}).items():
            assert dependency in found, f"{name} depends on unknown {dependency}"
            assert dependency != name
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in found[dependency], f"{dependency} has no health check"


def test_haproxy_balances_the_fleet_with_the_templates_settings() -> None:
    config = (DEPLOY / "compose" / "haproxy.cfg").read_text()
    template = (DEPLOY / "haproxy.cfg.template").read_text()
    fixed = [
        line.strip()
        for line in template.splitlines()
        if line.strip() and "$" not in line and not line.lstrip().startswith("#")
    ]
    lines = {line.strip() for line in config.splitlines()}
    missing = [line for line in fixed if line not in lines]
    assert not missing, f"deploy/compose/haproxy.cfg lost the template's lines: {missing}"
    servers = re.findall(r"^\s+server (\S+) (\S+):8000 check", config, re.M)
    fleet = {n for n, s in herald_services().items() if s["build"]["target"] == "fleet"}
    assert {name for name, _ in servers} == fleet
    assert {address for _, address in servers} == fleet


def test_haproxy_accepts_the_compose_config() -> None:
    try:
        binary = haproxy_binary()
    except HostsError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    result = subprocess.run(
        [binary, "-c", "-f", str(DEPLOY / "compose" / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"haproxy -c:\n{result.stdout}{result.stderr}"


def fleet_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in herald_services().items() if s["build"]["target"] == "fleet"}


def backend_lines(config: str, name: str) -> list[str]:
    """The lines of HAProxy section ``backend <name>``, stripped, comments left out."""
    lines, inside = [], False
    for raw in config.splitlines():
        if raw and not raw[0].isspace():
            inside = raw.split() == ["backend", name]
        elif inside and raw.strip() and not raw.strip().startswith("#"):
            lines.append(raw.strip())
    return lines


def test_haproxy_passes_the_client_address_to_a_fleet_that_expects_it() -> None:
    """send-proxy-v2 on the fleet's servers and their checks, HERALD_PROXY_PROTOCOL on every
    fleet service: the per-address limits count clients, not HAProxy (issue 11, item 6)."""
    backend = backend_lines((DEPLOY / "compose" / "haproxy.cfg").read_text(), "herald_fleet")
    assert "default-server send-proxy-v2 check-send-proxy" in backend, backend
    assert "option forwardfor" not in backend  # one way to name the client, not two
    for name, service in fleet_services().items():
        # Secret files exist in the container only: the rest parses as the fleet would.
        env = {k: v for k, v in service["environment"].items() if not k.endswith("_FILE")}
        settings = FleetSettings.from_env(env)
        assert settings.proxy_protocol, name
        assert not settings.trusted_proxies, name


@pytest.mark.timeout(60)
def test_the_fleet_health_check_asks_the_health_listener_of_a_host_behind_the_proxy_protocol(
    tmp_path: Path,
) -> None:
    """The compose health check runs against a real fleet host started the same way (PROXY
    protocol on its public port, a health listener beside it), with the host's address and
    health port in place of 127.0.0.1:8001."""
    spec = loopback_hosts(1)[0]
    assert spec.health_port is not None
    host = FleetHost(spec, workers=1, env=os.environ, log_dir=tmp_path, proxy_protocol=True)
    test = as_list(services()["fleet-1"]["healthcheck"]["test"])
    assert test[:3] == ["CMD", "python", "-c"] and "127.0.0.1:8001/readyz" in test[3], test
    code = test[3].replace("127.0.0.1:8001", f"{spec.address}:{spec.health_port}")

    def check() -> int:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, timeout=30, check=False
        ).returncode

    try:
        assert check() != 0  # nothing listens yet: unhealthy
        host.start()
        host.wait_ready(30)
        assert check() == 0
    finally:
        host.close()


def test_haproxy_checks_each_fleet_service_on_its_health_listener() -> None:
    """The checks go to HERALD_HEALTH_PORT without a PROXY header; clients to 8000 with one."""
    config = (DEPLOY / "compose" / "haproxy.cfg").read_text()
    for name, service in fleet_services().items():
        env = {k: v for k, v in service["environment"].items() if not k.endswith("_FILE")}
        settings = FleetSettings.from_env(env)
        assert settings.health_port is not None, name
        line = f"server {name} {name}:8000 check port {settings.health_port} no-check-send-proxy"
        assert line in config, (name, line)


def prometheus_config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    return loaded


def test_prometheus_scrapes_every_herald_process_and_haproxy() -> None:
    targets = {
        target
        for job in prometheus_config()["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    expected = {f"{name}:{metrics_port(service)}" for name, service in herald_services().items()}
    expected.add("haproxy:8404")
    assert expected <= targets, sorted(expected - targets)
    jobs = {job["job_name"] for job in prometheus_config()["scrape_configs"]}
    # The alert rules select these job names (monitoring/alerts.yml).
    assert {"herald", "herald-qa"} <= jobs


def metrics_port(service: dict[str, Any]) -> str:
    """The port of a Herald service's own metrics listener (issue 11, item 11)."""
    env = service["environment"]
    port = env.get("HERALD_METRICS_PORT") or env.get("HERALD_QA_METRICS_PORT")
    assert port, "set HERALD_METRICS_PORT / HERALD_QA_METRICS_PORT: /metrics off the public port"
    return str(port)


def test_metrics_listeners_are_not_published() -> None:
    for name, service in herald_services().items():
        port = metrics_port(service)
        published = {str(mapping).split(":")[-1] for mapping in service.get("ports", [])}
        assert port not in published, f"{name} publishes its metrics port {port}"


def find_promtool() -> str:
    in_venv = Path(sys.prefix) / "tools" / "promtool"
    found = str(in_venv) if in_venv.exists() else shutil.which("promtool")
    if found is None:
        pytest.fail(f"promtool not found in {in_venv.parent} or on PATH: run ./herald lint once")
    return found


def test_promtool_accepts_the_compose_prometheus_config(tmp_path: Path) -> None:
    # As mounted: the config and monitoring/alerts.yml side by side.
    prometheus = services()["prometheus"]
    mounts = dict(volume.split(":")[:2] for volume in prometheus["volumes"] if "/" in volume)
    for source, target in mounts.items():
        if target.startswith("/etc/prometheus/"):
            shutil.copy(DEPLOY / source, tmp_path / target.removeprefix("/etc/prometheus/"))
    result = subprocess.run(
        [find_promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"promtool check config:\n{result.stdout}{result.stderr}"


def test_grafana_provisions_the_dashboard_and_its_datasource() -> None:
    grafana = services()["grafana"]
    mounts = dict(volume.split(":")[:2] for volume in grafana["volumes"] if "/" in volume)
    provisioning = DEPLOY / "compose" / "grafana" / "provisioning"
    provider = yaml.safe_load((provisioning / "dashboards" / "herald.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    dashboard_target = mounts["../monitoring/grafana/herald.json"]
    assert Path(dashboard_target).parent == Path(path)
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (datasource,) = datasources["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["isDefault"] is True
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads((ROOT / "monitoring" / "grafana" / "herald.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for source, target in mounts.items():
        if target.startswith("/etc/grafana/provisioning/"):
            assert (DEPLOY / source).is_dir(), source
