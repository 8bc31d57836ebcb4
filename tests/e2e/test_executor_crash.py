"""An executor killed with SIGKILL mid-execution: a new one resumes it from the ledger. The
execution completes, each crawl job exists once, and its post-jobs run exactly once."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc

from libs.proto_json import from_dict
from quaero.v1 import crawler_service_pb2 as cr
from quaero.v1 import crawler_service_pb2_grpc, execution_pb2, executor_service_pb2_grpc, job_definition_pb2
from quaero.v1 import executor_service_pb2 as ex
from tests.support.processes import Process, service_env, wait
from tests.support.site import small_site


def definition(data: dict) -> job_definition_pb2.JobDefinition:  # type: ignore[type-arg]
    return from_dict(data, job_definition_pb2.JobDefinition)


def test_sigkill_mid_execution_then_resume(pg_url: str, amqp_url: str, tmp_path: Path) -> None:
    site = small_site(12)
    site.delay = 0.25
    env = service_env(pg_url, amqp_url, f"quaero.e2e.{uuid.uuid4().hex[:12]}", QUAERO_EXECUTION_LEASE_SECONDS="2")
    procs: list[Process] = []
    with site.serve_in_thread():
        try:
            crawler = Process.module("services.crawler.server", env, tmp_path / "crawler.log")
            procs.append(crawler)
            env["QUAERO_CRAWLER_ADDR"] = f"127.0.0.1:{crawler.port()}"
            procs.append(Process.module("services.crawler.worker", env, tmp_path / "worker.log"))
            first = Process.module("services.executor.server", env, tmp_path / "executor-1.log")
            procs.append(first)
            port = first.port()
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                executor = executor_service_pb2_grpc.ExecutorServiceStub(channel)
                executor.CreateJobDefinition(
                    ex.CreateJobDefinitionRequest(
                        job_definition=definition(
                            {
                                "id": "after",
                                "name": "After",
                                "type": "custom",
                                "steps": [{"name": "r", "action": "reindex"}],
                            }
                        )
                    )
                )
                steps = [
                    {
                        "name": "crawl",
                        "action": "crawl",
                        "config": {"start_urls": [site.url()], "max_depth": 1, "concurrency": 1},
                    }
                ]
                executor.CreateJobDefinition(
                    ex.CreateJobDefinitionRequest(
                        job_definition=definition(
                            {"id": "long", "name": "Long", "type": "crawler", "steps": steps, "post_jobs": ["after"]}
                        )
                    )
                )
                execution_id = executor.ExecuteJobDefinition(
                    ex.ExecuteJobDefinitionRequest(job_definition_id="long")
                ).execution.id
            with grpc.insecure_channel(env["QUAERO_CRAWLER_ADDR"]) as channel:
                crawler_stub = crawler_service_pb2_grpc.CrawlerServiceStub(channel)

                def crawl_jobs() -> list:  # type: ignore[type-arg]
                    return list(
                        crawler_stub.ListCrawlJobs(cr.ListCrawlJobsRequest(execution_id=execution_id)).crawl_jobs
                    )

                # Mid-crawl: some pages fetched, more to go.
                wait(lambda: any(j.progress.completed_urls >= 2 for j in crawl_jobs()))
                first.kill()
                second = Process.module("services.executor.server", env, tmp_path / "executor-2.log")
                procs.append(second)
                with grpc.insecure_channel(f"127.0.0.1:{second.port()}") as channel2:
                    executor = executor_service_pb2_grpc.ExecutorServiceStub(channel2)

                    def finished() -> execution_pb2.Execution | None:
                        execution = executor.GetExecution(ex.GetExecutionRequest(id=execution_id)).execution
                        return execution if execution.status == execution_pb2.EXECUTION_STATUS_COMPLETED else None

                    done = wait(finished, timeout=90)
                    assert len(crawl_jobs()) == 1  # resumed by replaying the StepCall: no second crawl
                    [triggered] = done.post_jobs.triggered
                    children = executor.ListExecutions(
                        ex.ListExecutionsRequest(parent_execution_id=execution_id)
                    ).executions
                    assert [c.id for c in children] == [triggered.execution_id]
                    wait(
                        lambda: (
                            executor.GetExecution(ex.GetExecutionRequest(id=triggered.execution_id)).execution.status
                            == execution_pb2.EXECUTION_STATUS_COMPLETED
                        )
                    )
                second.wait_for_log("resuming execution")
        finally:
            for p in reversed(procs):
                p.stop()
