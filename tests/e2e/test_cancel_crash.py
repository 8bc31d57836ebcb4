"""A cancel outlives the executor that took it (issue 15, point 2): the replica that answered
CancelExecution cannot reach the crawler (its connection is held open, every byte stalled) and is
SIGKILLed right after; another replica, which never drove the execution, cancels its crawl job
from the ledger's `crawl_cancels` row."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc

from libs.proto_json import from_dict
from quaero.v1 import (
    crawl_job_pb2,
    crawler_service_pb2_grpc,
    execution_pb2,
    executor_service_pb2_grpc,
    job_definition_pb2,
)
from quaero.v1 import crawler_service_pb2 as cr
from quaero.v1 import executor_service_pb2 as ex
from tests.support.crawl_workers import proxy_in_thread
from tests.support.processes import Process, service_env, wait
from tests.support.site import small_site

START = 120  # seconds for a service process to come up on a loaded machine: a bound, not a check


def test_cancel_survives_the_sigkill_of_the_replica_that_took_it(pg_url: str, amqp_url: str, tmp_path: Path) -> None:
    site = small_site(60)
    site.delay = 0.5  # at one page at a time, the crawl alone would run for 30 s and complete
    env = service_env(pg_url, amqp_url, f"quaero.e2e.{uuid.uuid4().hex[:12]}")
    procs: list[Process] = []
    with site.serve_in_thread():
        try:
            crawler = Process.module("services.crawler.server", env, tmp_path / "crawler.log")
            procs.append(crawler)
            crawler_port = crawler.port(timeout=START)
            env["QUAERO_CRAWLER_ADDR"] = f"127.0.0.1:{crawler_port}"
            procs.append(Process.module("services.crawler.worker", env, tmp_path / "worker.log"))
            with proxy_in_thread("127.0.0.1", crawler_port) as (proxy, loop):
                first = Process.module(
                    "services.executor.server",
                    {**env, "QUAERO_CRAWLER_ADDR": f"127.0.0.1:{proxy.port}"},
                    tmp_path / "executor-1.log",
                )
                second = Process.module("services.executor.server", env, tmp_path / "executor-2.log")
                procs.extend((first, second))
                first_port, _ = first.port(timeout=START), second.port(timeout=START)
                with (
                    grpc.insecure_channel(f"127.0.0.1:{first_port}") as channel,
                    grpc.insecure_channel(env["QUAERO_CRAWLER_ADDR"]) as crawler_channel,
                ):
                    executor = executor_service_pb2_grpc.ExecutorServiceStub(channel)
                    crawls = crawler_service_pb2_grpc.CrawlerServiceStub(crawler_channel)
                    steps = [
                        {
                            "name": "crawl",
                            "action": "crawl",
                            "config": {"start_urls": [site.url()], "max_depth": 1, "concurrency": 1},
                        }
                    ]
                    executor.CreateJobDefinition(
                        ex.CreateJobDefinitionRequest(
                            job_definition=from_dict(
                                {"id": "slow", "name": "Slow", "type": "crawler", "steps": steps},
                                job_definition_pb2.JobDefinition,
                            )
                        )
                    )
                    execution_id = executor.ExecuteJobDefinition(
                        ex.ExecuteJobDefinitionRequest(job_definition_id="slow")
                    ).execution.id

                    def jobs() -> list[crawl_job_pb2.CrawlJob]:
                        request = cr.ListCrawlJobsRequest(execution_id=execution_id)
                        return list(crawls.ListCrawlJobs(request).crawl_jobs)

                    wait(lambda: any(j.progress.completed_urls >= 2 for j in jobs()), timeout=90)
                    # The first replica can no longer reach the crawler, though its connection
                    # stays open (what it sends is dropped): its own ask hangs. It answers the cancel, then dies.
                    loop.call_soon_threadsafe(proxy.hold)
                    cancelled = executor.CancelExecution(ex.CancelExecutionRequest(id=execution_id)).execution
                    assert cancelled.status == execution_pb2.EXECUTION_STATUS_CANCELLED
                    first.kill()
                    [job] = wait(
                        lambda: [j for j in jobs() if j.status != crawl_job_pb2.CRAWL_JOB_STATUS_RUNNING] or None,
                        timeout=60,
                    )
                    assert job.status == crawl_job_pb2.CRAWL_JOB_STATUS_CANCELLED, job
                    assert job.progress.completed_urls < 61  # stopped, not run to its end
            # Only the second replica was there to do it, from the row the cancel wrote.
            done = second.wait_for_log("crawl jobs cancelled")
            assert done["execution_id"] == execution_id and done["crawl_job_ids"] == [job.id], done
        finally:
            for p in reversed(procs):
                p.stop()
