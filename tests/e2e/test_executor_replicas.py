"""Two executor processes on one PostgreSQL with a seconds-level schedule: over at least five
firings, each firing runs exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import grpc
from sqlalchemy.engine import make_url

from libs.proto_json import from_dict
from quaero.v1 import executor_service_pb2 as ex
from quaero.v1 import executor_service_pb2_grpc, job_definition_pb2
from tests.support.processes import Process, service_env


def firings(dsn: str) -> list[tuple[object, str | None, str]]:
    async def read() -> list[tuple[object, str | None, str]]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch(
                "SELECT fire_at, execution_id, skipped FROM executor.schedule_firings"
                " WHERE job_definition_id = 'every-2s' ORDER BY fire_at"
            )
            return [(r["fire_at"], r["execution_id"], r["skipped"]) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(read())


def test_two_executors_fire_each_firing_once(pg_url: str, amqp_url: str, tmp_path: Path) -> None:
    env = service_env(pg_url, amqp_url, f"quaero.e2e.{uuid.uuid4().hex[:12]}")
    dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    procs: list[Process] = []
    try:
        crawler = Process.module("services.crawler.server", env, tmp_path / "crawler.log")
        procs.append(crawler)
        env["QUAERO_CRAWLER_ADDR"] = f"127.0.0.1:{crawler.port()}"
        replicas = [Process.module("services.executor.server", env, tmp_path / f"executor-{i}.log") for i in (1, 2)]
        procs.extend(replicas)
        ports = [r.port() for r in replicas]
        with grpc.insecure_channel(f"127.0.0.1:{ports[0]}") as channel:
            stub = executor_service_pb2_grpc.ExecutorServiceStub(channel)
            body = {"id": "every-2s", "name": "Every 2 s", "type": "custom", "schedule": "*/2 * * * * *",
                    "steps": [{"name": "r", "action": "reindex"}]}  # fmt: skip
            stub.CreateJobDefinition(
                ex.CreateJobDefinitionRequest(job_definition=from_dict(body, job_definition_pb2.JobDefinition))
            )
            deadline = time.monotonic() + 60
            while len([f for f in firings(dsn) if f[1]]) < 6 and time.monotonic() < deadline:
                time.sleep(0.5)
            stub.UpdateJobDefinition(
                ex.UpdateJobDefinitionRequest(
                    id="every-2s",
                    job_definition=from_dict({**body, "enabled": False}, job_definition_pb2.JobDefinition),
                )
            )
            # A replica logs this only after any firing it was starting is recorded.
            for replica in replicas:
                replica.wait_for_log("definition unscheduled")
            recorded = firings(dsn)
            started = [f for f in recorded if f[1]]
            assert len(started) >= 5, recorded
            executions = stub.ListExecutions(
                ex.ListExecutionsRequest(job_definition_id="every-2s", limit=500)
            ).executions
            assert sorted(e.id for e in executions) == sorted(f[1] for f in started)  # one execution per firing
        # Both replicas were live and scheduling it...
        for replica in replicas:
            assert any(
                e.get("message") == "definition scheduled" and e.get("job_definition_id") == "every-2s"
                for e in replica.entries()
            ), replica.log.read_text()[-3000:]
        # ...and each started firing was started once, by one of them (which one is a race).
        started_by = [
            e["execution_id"]
            for r in replicas
            for e in r.entries()
            if e.get("message") == "scheduled execution started"
        ]
        assert sorted(started_by) == sorted(f[1] for f in started)
    finally:
        for p in reversed(procs):
            p.stop()
