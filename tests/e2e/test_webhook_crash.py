"""Webhooks are delivered at least once across an executor killed with SIGKILL between two
attempts: a new executor process delivers what the outbox holds, under the same webhook-id, and
the receiver verifies every attempt with `standardwebhooks`."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc

from libs.proto_json import from_dict
from quaero.v1 import execution_pb2, executor_service_pb2_grpc, job_definition_pb2
from quaero.v1 import executor_service_pb2 as ex
from tests.support.processes import Process, service_env, wait
from tests.support.receiver import Receiver
from tests.support.site import small_site


def test_sigkill_between_attempts_then_another_executor_delivers(pg_url: str, amqp_url: str, tmp_path: Path) -> None:
    site = small_site(3)
    receiver = Receiver(fail_first=2)
    env = service_env(
        pg_url,
        amqp_url,
        f"quaero.e2e.{uuid.uuid4().hex[:12]}",
        QUAERO_EXECUTION_LEASE_SECONDS="2",
        # Room to kill the first executor between its first and second attempt.
        QUAERO_WEBHOOK_RETRY_INITIAL_SECONDS="1",
        QUAERO_WEBHOOK_RETRY_MAX_SECONDS="1",
        QUAERO_WEBHOOK_TIMEOUT_SECONDS="2",
    )
    procs: list[Process] = []
    with site.serve_in_thread(), receiver.serve_in_thread():
        try:
            crawler = Process.module("services.crawler.server", env, tmp_path / "crawler.log")
            procs.append(crawler)
            env["QUAERO_CRAWLER_ADDR"] = f"127.0.0.1:{crawler.port()}"
            procs.append(Process.module("services.crawler.worker", env, tmp_path / "worker.log"))
            first = Process.module("services.executor.server", env, tmp_path / "executor-1.log")
            procs.append(first)
            with grpc.insecure_channel(f"127.0.0.1:{first.port()}") as channel:
                executor = executor_service_pb2_grpc.ExecutorServiceStub(channel)
                body = {
                    "id": "hooked",
                    "name": "Hooked",
                    "type": "crawler",
                    "steps": [{"name": "crawl", "action": "crawl", "config": {"start_urls": [site.url()]}}],
                    "webhooks": [{"url": receiver.url(), "events": ["execution.completed"], "secret": receiver.secret}],
                }
                executor.CreateJobDefinition(
                    ex.CreateJobDefinitionRequest(job_definition=from_dict(body, job_definition_pb2.JobDefinition))
                )
                execution_id = executor.ExecuteJobDefinition(
                    ex.ExecuteJobDefinitionRequest(job_definition_id="hooked")
                ).execution.id
                # The first attempt reached the receiver (and got a 500): kill the executor now.
                wait(lambda: len(receiver.received) >= 1)
                first.kill()
            second = Process.module("services.executor.server", env, tmp_path / "executor-2.log")
            procs.append(second)
            with grpc.insecure_channel(f"127.0.0.1:{second.port()}") as channel:
                executor = executor_service_pb2_grpc.ExecutorServiceStub(channel)

                def delivered() -> execution_pb2.WebhookDelivery | None:
                    response = executor.ListWebhookDeliveries(
                        ex.ListWebhookDeliveriesRequest(execution_id=execution_id)
                    )
                    [delivery] = response.deliveries
                    return delivery if delivery.status == execution_pb2.WEBHOOK_DELIVERY_STATUS_DELIVERED else None

                delivery = wait(delivered, timeout=90)
            assert "execution.completed" in receiver.delivered()
            assert receiver.delivered()["execution.completed"]["data"]["execution_id"] == execution_id
            # Every attempt, before and after the kill, verified and under the one webhook-id.
            assert all(r.verified for r in receiver.received)
            assert {r.webhook_id for r in receiver.received} == {delivery.id}
            assert [r.answered for r in receiver.received] == [500, 500, 204]
            assert delivery.last_status_code == 204
        finally:
            for p in reversed(procs):
                p.stop()
