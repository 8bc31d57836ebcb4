"""docker-compose.yml and the Dockerfile cannot be run here (no Docker engine), so check what can
go wrong without one: every command a container runs exists, and every variable set is a setting."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli.main import app as cli_app
from libs.settings import CommonSettings
from services.crawler.settings import CrawlerSettings
from services.executor.settings import ExecutorSettings
from services.gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SETTINGS: list[type[CommonSettings]] = [CommonSettings, ExecutorSettings, CrawlerSettings, GatewaySettings]
QUAERO_SERVICES = {
    name: spec for name, spec in COMPOSE["services"].items() if spec.get("image", "").startswith("quaero")
}


def known_variables() -> set[str]:
    return {f"QUAERO_{field.upper()}" for cls in SETTINGS for field in cls.model_fields}


def test_compose_runs_the_production_topology() -> None:
    assert set(COMPOSE["services"]) >= {
        "postgres",
        "rabbitmq",
        "migrate",
        "executor",
        "crawler",
        "crawler-worker",
        "gateway",
    }
    for infra in ("postgres", "rabbitmq"):
        assert "healthcheck" in COMPOSE["services"][infra]


@pytest.mark.parametrize("name", sorted(QUAERO_SERVICES))
def test_every_command_exists(name: str) -> None:
    command: list[str] = QUAERO_SERVICES[name]["command"]
    if command[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(command[2]) is not None, f"{name}: no module {command[2]}"
        module = importlib.import_module(command[2])
        assert callable(getattr(module, "main", None)), f"{name}: {command[2]} has no main()"
    else:
        assert command[0] == "quaero"
        names = {c.name or c.callback.__name__ for c in cli_app.registered_commands}  # type: ignore[union-attr]
        assert command[1] in names, f"{name}: no `quaero {command[1]}` command"


@pytest.mark.parametrize("name", sorted(QUAERO_SERVICES))
def test_every_variable_is_a_setting(name: str) -> None:
    environment: dict[str, Any] = QUAERO_SERVICES[name].get("environment", {})
    unknown = {key for key in environment if key.startswith("QUAERO_")} - known_variables()
    assert not unknown, f"{name} sets variables no settings class reads: {sorted(unknown)}"


@pytest.mark.parametrize("name", sorted(QUAERO_SERVICES))
def test_every_container_listening_beyond_loopback_requires_the_token(name: str) -> None:
    """The settings refuse a non-loopback QUAERO_BIND_HOST without a token; compose must not
    start anything without one (nor fall back to a default everyone knows)."""
    from libs.settings import is_loopback

    environment: dict[str, Any] = QUAERO_SERVICES[name].get("environment", {})
    assert not is_loopback(environment["QUAERO_BIND_HOST"])
    assert "QUAERO_ALLOW_UNAUTHENTICATED" not in environment
    assert re.fullmatch(r"\$\{QUAERO_API_TOKEN:\?[^}]+\}", environment["QUAERO_API_TOKEN"])


# The gRPC port each long-running service listens on, and so the port its healthcheck must probe.
HEALTH_PORTS = {"crawler": "crawler_port", "executor": "executor_port", "gateway": "gateway_grpc_port"}


@pytest.mark.parametrize("name", sorted(HEALTH_PORTS))
def test_every_healthcheck_probes_the_port_its_service_serves(name: str) -> None:
    spec = QUAERO_SERVICES[name]
    probe = spec["healthcheck"]["test"]
    assert probe[:4] == ["CMD", "python", "-m", "libs.healthcheck"], probe
    field = HEALTH_PORTS[name]
    settings_cls = next(cls for cls in SETTINGS[1:] if field in cls.model_fields)
    configured = spec.get("environment", {}).get(f"QUAERO_{field.upper()}")
    port = int(configured) if configured is not None else settings_cls.model_fields[field].default
    assert probe[4] == f"127.0.0.1:{port}", f"{name} serves gRPC on {port} but its healthcheck probes {probe[4]}"


async def test_the_healthcheck_probe_tells_serving_from_down() -> None:
    """The probe the containers run, run the same way: 0 against a live server, 1 once it stops."""
    import asyncio
    import sys

    from libs.grpc_server import start_grpc_server

    async def probe(port: int) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "libs.healthcheck", f"127.0.0.1:{port}", cwd=ROOT
        )
        return await proc.wait()

    server = await start_grpc_server("127.0.0.1:0", [], service="probe-test")
    try:
        assert await probe(server.port) == 0
    finally:
        await server.stop(0)
    assert await probe(server.port) == 1


def test_dockerfile_entry_points_exist() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r'^CMD \["quaero", "(\w+)"\]', dockerfile, re.MULTILINE)
    assert cmd and cmd.group(1) == "up"
    for copied in re.findall(r"^COPY (\S+) \./", dockerfile, re.MULTILINE):
        if not copied.startswith("--"):
            assert (ROOT / copied).exists(), f"Dockerfile copies missing {copied}"


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = sorted(v for v in known_variables() if f"`{v}`" not in readme)
    assert not missing, f"README configuration table lacks {missing}"
