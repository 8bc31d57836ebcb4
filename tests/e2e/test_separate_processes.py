"""The production topology on one machine: crawler, executor and gateway as separate processes on
PostgreSQL and RabbitMQ, with an API token as docker-compose.yml requires, driven through the REST
API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.processes import Process, service_env

TOKEN = "e2e-s3cret"
LIST = reflection_pb2.ServerReflectionRequest(list_services="")


@pytest.fixture
def services(pg_url: str, amqp_url: str, tmp_path: Path) -> Iterator[dict[str, object]]:
    env = service_env(
        pg_url, amqp_url, f"quaero.e2e.{uuid.uuid4().hex[:12]}", QUAERO_METRICS_PORT="0", QUAERO_API_TOKEN=TOKEN
    )
    procs: list[Process] = []
    try:
        crawler = Process.module("services.crawler.server", env, tmp_path / "crawler.log")
        procs.append(crawler)
        crawler_port = crawler.port()
        env["QUAERO_CRAWLER_ADDR"] = f"127.0.0.1:{crawler_port}"
        executor = Process.module("services.executor.server", env, tmp_path / "executor.log")
        procs.append(executor)
        executor_port = executor.port()
        env["QUAERO_EXECUTOR_ADDR"] = f"127.0.0.1:{executor_port}"
        gateway = Process.module("services.gateway.server", env, tmp_path / "gateway.log")
        procs.append(gateway)
        ready = gateway.wait_for_log("gateway listening")
        yield {
            "procs": procs,
            "base_url": f"http://{ready['address']}",
            "grpc_ports": [crawler_port, executor_port, ready["grpc_port"]],
        }
    finally:
        for p in reversed(procs):
            p.stop()


def test_rest_through_three_processes(services: dict) -> None:  # type: ignore[type-arg]
    definition = {
        "id": "e2e",
        "name": "End to end",
        "type": "crawler",
        "steps": [
            {"name": "crawl", "action": "crawl", "config": {"start_urls": ["http://127.0.0.1:9/"], "max_depth": 1}}
        ],
    }
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=services["base_url"], headers=headers, timeout=30) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        created = http.post("/api/job-definitions", json=definition)
        assert created.status_code == 201, created.text
        assert http.post("/api/job-definitions", json=definition).status_code == 409
        bad = http.post(
            "/api/job-definitions", json={**definition, "id": "bad", "steps": [{"name": "x", "action": "nope"}]}
        )
        assert bad.status_code == 400 and bad.json()["error"]["details"][0]["field"] == "steps[0].action"
        listed = http.get("/api/job-definitions").json()
        assert [d["id"] for d in listed["job_definitions"]] == ["e2e"] and listed["total_count"] == 1
        assert http.get("/api/job-definitions/e2e").json()["steps"][0]["config"]["max_depth"] == 1
        assert http.delete("/api/job-definitions/e2e").status_code == 204
        assert http.get("/api/job-definitions/e2e").status_code == 404

    # Health checking needs no token; everything else does, on every process.
    for port in services["grpc_ports"]:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as refused:
                next(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([LIST]), timeout=5))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED

    # Each service process serves its own Prometheus metrics (QUAERO_METRICS_PORT).
    executor, crawler = services["procs"][1], services["procs"][0]
    executor_metrics = httpx.get(
        f"http://{executor.wait_for_log('metrics endpoint listening')['address']}/metrics"
    ).text
    assert (
        'quaero_grpc_requests_total{code="OK",method="/quaero.v1.ExecutorService/CreateJobDefinition"'
        in executor_metrics
    )
    crawler_metrics = httpx.get(f"http://{crawler.wait_for_log('metrics endpoint listening')['address']}/metrics").text
    assert "quaero_queue_depth" in crawler_metrics


def test_sigterm_shuts_every_process_down_cleanly(services: dict) -> None:  # type: ignore[type-arg]
    for proc in reversed(services["procs"]):
        assert proc.stop() == 0
