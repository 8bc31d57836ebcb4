"""The CrawlerService gRPC servicer: translates messages to the crawler's domain and back."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging

from libs.amqp import TaskQueue
from libs.bounds import check_ids, query_problem, text_problem
from libs.db import Database, page
from libs.errors import InvalidArgument
from libs.logs import current_request_id
from quaero.v1 import crawl_job_pb2, crawler_service_pb2, crawler_service_pb2_grpc
from services.crawler import chunks, llms
from services.crawler import queue as tasks_queue
from services.crawler.actions import ACTIONS, StepRunner
from services.crawler.actions.crawl import RECHECK_INTERVAL
from services.crawler.messages import (
    change_message,
    change_name,
    document_message,
    event_message,
    job_message,
    log_message,
    status_name,
    url_message,
    url_state_name,
    version_message,
)
from services.crawler.store import SNIPPET_SOURCE_CHARS, TERMINAL, CrawlStore, DocumentRow, ListFilter, job_channel

log = logging.getLogger(__name__)

# Documents of llms-full.txt read at a time (each with its Markdown).
_FULL_BATCH = 20

_LEVEL_MIN = {
    crawl_job_pb2.LOG_LEVEL_UNSPECIFIED: 0,
    crawl_job_pb2.LOG_LEVEL_DEBUG: 10,
    crawl_job_pb2.LOG_LEVEL_INFO: 20,
    crawl_job_pb2.LOG_LEVEL_WARN: 30,
    crawl_job_pb2.LOG_LEVEL_ERROR: 40,
}


def _required(value: str, field: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidArgument.field(field, "is required")
    return value


def _text(value: str, field: str) -> str:
    """A free-text filter (a skip reason, a cancel reason), stripped; it must be storable text."""
    problem = text_problem(value)
    if problem:
        raise InvalidArgument.field(field, problem)
    return value.strip()


def _enum_filter(number: int, name: str | None, field: str) -> str | None:
    if number and name is None:
        raise InvalidArgument.field(field, "is not a known value")
    return name


class CrawlerServicer(crawler_service_pb2_grpc.CrawlerServiceServicer):
    def __init__(self, db: Database, store: CrawlStore, queue: TaskQueue, *, versions_kept: int = 5) -> None:
        self.db = db
        self.store = store
        self.queue = queue
        self.steps = StepRunner(db, store, queue, versions_kept=versions_kept)

    async def ListActions(self, request, context):  # type: ignore[no-untyped-def]
        return crawler_service_pb2.ListActionsResponse(
            actions=[crawler_service_pb2.Action(name=a.name, description=a.description) for a in ACTIONS]
        )

    # ------------------------------------------------------------------------------- steps

    async def RunSteps(self, request_iterator, context):  # type: ignore[no-untyped-def]
        """Each StepCall runs in its own task; their events go out as they come. Closing the
        stream stops the reporting, never the crawl jobs."""
        out: asyncio.Queue[crawler_service_pb2.RunStepsResponse | None] = asyncio.Queue()
        running: set[asyncio.Task[None]] = set()

        def emit(event: crawler_service_pb2.StepEvent) -> None:
            out.put_nowait(crawler_service_pb2.RunStepsResponse(event=event))

        async def read() -> None:
            try:
                async for request in request_iterator:
                    if request.HasField("call"):
                        task = asyncio.create_task(self.steps.run(request.call, emit))
                        running.add(task)
                        task.add_done_callback(running.discard)
                await asyncio.gather(*list(running), return_exceptions=True)
            finally:
                out.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await out.get()) is not None:
                yield response
        finally:
            reader.cancel()
            for task in list(running):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    # -------------------------------------------------------------------------------- jobs

    async def GetCrawlJob(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        job = await self.store.get_job(_required(request.id, "id"))
        return crawler_service_pb2.GetCrawlJobResponse(crawl_job=job_message(job))

    async def ListCrawlJobs(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "job_definition_id", "execution_id", "source_id")
        pg = page(
            request.limit, request.offset, request.order_by, request.order_dir,
            allowed=("created_at", "updated_at", "name"),
        )  # fmt: skip
        flt = ListFilter(
            status=_enum_filter(request.status, status_name(request.status), "status"),
            job_definition_id=request.job_definition_id or None,
            execution_id=request.execution_id or None,
            source_id=request.source_id or None,
        )
        jobs, total = await self.store.list_jobs(flt, pg)
        return crawler_service_pb2.ListCrawlJobsResponse(
            crawl_jobs=[job_message(j) for j in jobs], total_count=total, limit=pg.limit, offset=pg.offset
        )

    async def GetCrawlJobStats(self, request, context):  # type: ignore[no-untyped-def]
        stats = await self.store.job_stats()
        return crawler_service_pb2.GetCrawlJobStatsResponse(
            **{k: stats.get(k, 0) for k in ("total", "pending", "running", "completed", "failed", "cancelled")}
        )

    async def CancelCrawlJob(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        job = await self.store.cancel_job(_required(request.id, "id"))
        return crawler_service_pb2.CancelCrawlJobResponse(crawl_job=job_message(job))

    async def CancelCrawlJobs(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "execution_id")
        execution_id = _required(request.execution_id, "execution_id")
        ids = await self.store.cancel_execution(execution_id, _text(request.reason, "reason") or "cancelled")
        return crawler_service_pb2.CancelCrawlJobsResponse(cancelled_job_ids=ids)

    async def RerunCrawlJob(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        job, tasks = await self.store.rerun_job(_required(request.id, "id"), current_request_id() or "")
        await tasks_queue.publish(self.queue, tasks, give_back=self.db)
        return crawler_service_pb2.RerunCrawlJobResponse(original_job_id=request.id.strip(), crawl_job=job_message(job))

    async def DeleteCrawlJob(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        await self.store.delete_job(_required(request.id, "id"))
        return crawler_service_pb2.DeleteCrawlJobResponse()

    async def WatchCrawlJob(self, request, context):  # type: ignore[no-untyped-def]
        """A snapshot (unless resuming after an event id), then each event, until terminal."""
        check_ids(request, "id")
        job_id = _required(request.id, "id")
        async with self.db.notifier.subscribe(job_channel(job_id)) as wake:
            job, last_id = await self.store.job_with_last_event(job_id)
            if request.after_event_id > 0:
                last_id = request.after_event_id
            else:
                snapshot = crawl_job_pb2.JobEvent(id=last_id, job_id=job_id, type="snapshot")
                snapshot.created_at.GetCurrentTime()
                yield crawler_service_pb2.WatchCrawlJobResponse(event=snapshot, crawl_job=job_message(job))
            while True:
                wake.clear()
                events = await self.store.events_after(job_id, last_id)
                if events:
                    job = await self.store.get_job(job_id)
                    for event in events:
                        last_id = event.id
                        yield crawler_service_pb2.WatchCrawlJobResponse(
                            event=event_message(event), crawl_job=job_message(job)
                        )
                    continue
                if job.status in TERMINAL:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), RECHECK_INTERVAL)
                job = await self.store.get_job(job_id)

    async def ListJobLogs(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "job_id")
        job_id = _required(request.job_id, "job_id")
        if request.level not in _LEVEL_MIN:
            raise InvalidArgument.field("level", "is not a known level")
        order = (request.order or "desc").lower()
        if order not in ("asc", "desc"):
            raise InvalidArgument.field("order", "must be asc or desc")
        pg = page(request.limit, request.offset, "", "", allowed=("created_at",))
        logs, total = await self.store.list_logs(job_id, _LEVEL_MIN[request.level], order == "asc", pg)
        return crawler_service_pb2.ListJobLogsResponse(
            logs=[log_message(e) for e in logs], total_count=total, limit=pg.limit, offset=pg.offset
        )

    async def ListCrawlUrls(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "job_id")
        job_id = _required(request.job_id, "job_id")
        state = _enum_filter(request.state, url_state_name(request.state), "state")
        pg = page(request.limit, request.offset, "", "", allowed=("created_at",))
        urls, total = await self.store.list_urls(job_id, state, _text(request.reason, "reason"), pg)
        return crawler_service_pb2.ListCrawlUrlsResponse(
            urls=[url_message(u) for u in urls], total_count=total, limit=pg.limit, offset=pg.offset
        )

    async def ListJobChanges(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "job_id")
        job_id = _required(request.job_id, "job_id")
        change = _enum_filter(request.change, change_name(request.change), "change")
        pg = page(request.limit, request.offset, "", "", allowed=("created_at",))
        changes, total = await self.store.list_job_changes(job_id, change, pg)
        return crawler_service_pb2.ListJobChangesResponse(
            changes=[change_message(c) for c in changes], total_count=total, limit=pg.limit, offset=pg.offset
        )

    # --------------------------------------------------------------------------- documents

    async def ListDocuments(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "source_id", "job_id")
        pg = page(
            request.limit, request.offset, request.order_by, request.order_dir,
            allowed=("created_at", "updated_at", "title"),
        )  # fmt: skip
        docs, total = await self.store.list_documents(
            request.source_id.strip(), request.job_id.strip(), pg, include_removed=request.include_removed
        )
        return crawler_service_pb2.ListDocumentsResponse(
            documents=[document_message(d) for d in docs], total_count=total, limit=pg.limit, offset=pg.offset
        )

    async def GetDocument(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        doc = await self.store.get_document(_required(request.id, "id"))
        return crawler_service_pb2.GetDocumentResponse(document=document_message(doc, markdown=True))

    async def ListDocumentChunks(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "document_id")
        document_id = _required(request.document_id, "document_id")
        max_tokens = request.max_tokens or chunks.MAX_TOKENS
        if not chunks.MIN_MAX_TOKENS <= max_tokens <= chunks.MAX_MAX_TOKENS:
            raise InvalidArgument.field(
                "max_tokens", f"must be between {chunks.MIN_MAX_TOKENS} and {chunks.MAX_MAX_TOKENS}"
            )
        pg = page(request.limit, request.offset, "", "", allowed=("created_at",))
        doc = await self.store.get_document(document_id)
        # Computed from the stored Markdown: off the event loop, as a document may be large.
        found = await asyncio.to_thread(chunks.chunks, doc.url, doc.markdown, max_tokens)
        return crawler_service_pb2.ListDocumentChunksResponse(
            chunks=[
                crawl_job_pb2.DocumentChunk(id=c.id, heading_path=c.heading_path, text=c.text, tokens=c.tokens)
                for c in found[pg.offset : pg.offset + pg.limit]
            ],
            total_count=len(found),
            limit=pg.limit,
            offset=pg.offset,
        )

    async def GetSourceLlmsTxt(self, request, context):  # type: ignore[no-untyped-def]
        """Streamed: the head, then a piece per batch of index lines (llms.txt) or per document
        (llms-full.txt), the documents read a batch at a time; no message holds the whole file."""
        check_ids(request, "source_id")
        source_id = _required(request.source_id, "source_id")
        for field in ("name", "summary"):
            problem = text_problem(getattr(request, field))
            if problem:
                raise InvalidArgument.field(field, problem)
        if request.format not in (
            crawler_service_pb2.LLMS_TXT_FORMAT_UNSPECIFIED,
            crawler_service_pb2.LLMS_TXT_FORMAT_INDEX,
            crawler_service_pb2.LLMS_TXT_FORMAT_FULL,
        ):
            raise InvalidArgument.field("format", "is not a known value")
        summary = request.summary.strip()
        if not summary:
            count, hosts = await self.store.count_source_documents(source_id)
            summary = llms.default_summary(count, hosts)
        piece = crawler_service_pb2.GetSourceLlmsTxtResponse
        yield piece(text=llms.head(request.name.strip() or source_id, summary))
        if request.format == crawler_service_pb2.LLMS_TXT_FORMAT_FULL:
            async for batch in self.store.source_documents(source_id, markdown=True, batch=_FULL_BATCH):
                for doc in batch:
                    yield piece(text=llms.full_entry(doc))
            return
        root = self.store.source_documents(source_id, markdown=False)
        every = self.store.source_documents(source_id, markdown=False)
        async for text in llms.index_pieces(root, every):
            yield piece(text=text)

    async def SearchDocuments(self, request, context):  # type: ignore[no-untyped-def]
        # Bounded before anything reads it: 50,000 terms once took 4.7 GB and a core past the deadline.
        problem = query_problem(request.query)
        if problem:
            raise InvalidArgument.field("query", problem)
        check_ids(request, "source_id", "job_id")
        query = _required(request.query, "query")
        pg = page(request.limit, request.offset, "", "", allowed=("created_at",))
        hits, total = await self.store.search_documents(
            query,
            request.source_id.strip(),
            request.job_id.strip(),
            pg.limit,
            pg.offset,
            include_removed=request.include_removed,
        )
        paths = await self._heading_paths(query, hits)
        documents = []
        for d, s in hits:
            msg = document_message(d, snippet=s)
            msg.heading_path.extend(paths.get(d.id, ()))
            documents.append(msg)
        return crawler_service_pb2.SearchDocumentsResponse(
            documents=documents,
            total_count=total,
            limit=pg.limit,
            offset=pg.offset,
        )

    async def _heading_paths(self, query: str, hits: list[tuple[DocumentRow, str]]) -> dict[str, tuple[str, ...]]:
        """The heading path of each hit's best-matching chunk, from the part of its Markdown the
        snippets are made from."""
        heads = await self.store.document_heads([d.id for d, _ in hits], SNIPPET_SOURCE_CHARS)

        def work() -> dict[str, tuple[str, ...]]:
            out: dict[str, tuple[str, ...]] = {}
            for d, snippet in hits:
                url, markdown = heads.get(d.id, (d.url, ""))
                best = chunks.best_chunk(chunks.chunks(url, markdown), chunks.search_terms(query, snippet))
                if best is not None:
                    out[d.id] = best.heading_path
            return out

        return await asyncio.to_thread(work)

    async def ListDocumentVersions(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "document_id")
        document_id = _required(request.document_id, "document_id")
        pg = page(request.limit, request.offset, "", "", allowed=("created_at",))
        versions, total = await self.store.list_versions(document_id, pg)
        return crawler_service_pb2.ListDocumentVersionsResponse(
            versions=[version_message(v) for v in versions], total_count=total, limit=pg.limit, offset=pg.offset
        )

    async def GetDocumentVersion(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "document_id")
        document_id = _required(request.document_id, "document_id")
        version = await self.store.get_version(document_id, request.version)
        return crawler_service_pb2.GetDocumentVersionResponse(version=version_message(version, markdown=True))

    async def DiffDocumentVersions(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "document_id")
        document_id = _required(request.document_id, "document_id")
        if request.to_version < 0:
            raise InvalidArgument.field("to_version", "must be 1 or more (0: the current version)")
        if request.from_version < 0:
            raise InvalidArgument.field("from_version", "must be 1 or more (0: the version before to_version)")
        current = (await self.store.get_document(document_id)).version or 1
        to_number = request.to_version or current
        newer = await self.store.get_version(document_id, to_number, "to_version")
        from_number = request.from_version or to_number - 1
        if from_number < 1:
            raise InvalidArgument.field("from_version", f"version {to_number} has no version before it")
        older = await self.store.get_version(document_id, from_number, "from_version")
        # Off the event loop: difflib is quadratic in the worst case, and pages are hostile input.
        diff = await asyncio.to_thread(_unified_diff, older.markdown, newer.markdown, from_number, to_number)
        return crawler_service_pb2.DiffDocumentVersionsResponse(
            from_version=from_number, to_version=to_number, diff=diff
        )


def _unified_diff(older: str, newer: str, from_number: int, to_number: int) -> str:
    """A unified diff of two versions' Markdown, empty when they are equal."""
    lines = difflib.unified_diff(
        older.splitlines(keepends=True), newer.splitlines(keepends=True),
        fromfile=f"version {from_number}", tofile=f"version {to_number}",
    )  # fmt: skip
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
