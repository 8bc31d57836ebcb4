"""The ExecutorService gRPC servicer: translates requests to the domain and back."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from libs.bounds import check_ids
from libs.db import page
from libs.errors import InvalidArgument
from libs.proto_json import enum_to_str
from quaero.v1 import executor_service_pb2, executor_service_pb2_grpc
from services.executor.catalogue import Catalogue
from services.executor.convert import (
    DEF_TYPE,
    SOURCE_TYPE,
    definition_from_proto,
    definition_to_proto,
    delivery_to_proto,
    event_to_proto,
    execution_to_proto,
    source_from_proto,
    source_to_proto,
    status_from_proto,
    trigger_from_proto,
)
from services.executor.executions import Executions
from services.executor.outbox import Outbox
from services.executor.postjobs import PostJobs

log = logging.getLogger(__name__)


def _type_filter(number: int, enum: Any) -> str | None:
    return enum_to_str(enum, number) if number else None


class ExecutorServicer(executor_service_pb2_grpc.ExecutorServiceServicer):
    def __init__(
        self, catalogue: Catalogue, executions: Executions, post_jobs: PostJobs, outbox: Outbox | None = None
    ) -> None:
        self.catalogue = catalogue
        self.store = catalogue.store
        self.executions = executions
        self.post_jobs = post_jobs
        self.outbox = outbox or Outbox(executions.ledger.db)

    # job definitions

    async def CreateJobDefinition(self, request, context):  # type: ignore[no-untyped-def]
        saved, _ = await self.catalogue.save_definition(definition_from_proto(request.job_definition), "create")
        log.info("job definition created", extra={"job_definition_id": saved.id})
        return executor_service_pb2.CreateJobDefinitionResponse(job_definition=definition_to_proto(saved))

    async def GetJobDefinition(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        d = await self.store.get_definition(request.id)
        return executor_service_pb2.GetJobDefinitionResponse(job_definition=definition_to_proto(d))

    async def ListJobDefinitions(self, request, context):  # type: ignore[no-untyped-def]
        p = page(
            request.limit,
            request.offset,
            request.order_by,
            request.order_dir,
            allowed=("created_at", "updated_at", "name"),
        )
        items, total = await self.store.list_definitions(
            p,
            type=_type_filter(request.type, DEF_TYPE),
            enabled=request.enabled if request.HasField("enabled") else None,
        )
        return executor_service_pb2.ListJobDefinitionsResponse(
            job_definitions=[definition_to_proto(d) for d in items], total_count=total, limit=p.limit, offset=p.offset
        )

    async def UpdateJobDefinition(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        d = definition_from_proto(request.job_definition)
        d.id = request.id or d.id
        saved, changed = await self.catalogue.save_definition(d, "update")
        if changed:
            log.info("job definition updated", extra={"job_definition_id": saved.id, "version": saved.version})
        return executor_service_pb2.UpdateJobDefinitionResponse(job_definition=definition_to_proto(saved))

    async def DeleteJobDefinition(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        await self.store.delete_definition(request.id)
        log.info("job definition deleted", extra={"job_definition_id": request.id})
        return executor_service_pb2.DeleteJobDefinitionResponse()

    # sources

    async def CreateSource(self, request, context):  # type: ignore[no-untyped-def]
        s = source_from_proto(request.source)
        s.id = s.id or str(uuid.uuid4())
        saved, _ = await self.catalogue.save_source(s, "create")
        log.info("source created", extra={"source_id": saved.id})
        return executor_service_pb2.CreateSourceResponse(source=source_to_proto(saved))

    async def GetSource(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        return executor_service_pb2.GetSourceResponse(source=source_to_proto(await self.store.get_source(request.id)))

    async def ListSources(self, request, context):  # type: ignore[no-untyped-def]
        p = page(
            request.limit,
            request.offset,
            request.order_by,
            request.order_dir,
            allowed=("created_at", "updated_at", "name"),
        )
        items, total = await self.store.list_sources(
            p,
            type=_type_filter(request.type, SOURCE_TYPE),
            enabled=request.enabled if request.HasField("enabled") else None,
        )
        return executor_service_pb2.ListSourcesResponse(
            sources=[source_to_proto(s) for s in items], total_count=total, limit=p.limit, offset=p.offset
        )

    async def UpdateSource(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        s = source_from_proto(request.source)
        s.id = request.id or s.id
        saved, _ = await self.catalogue.save_source(s, "update", keep_auth=request.keep_auth and not s.has_auth)
        return executor_service_pb2.UpdateSourceResponse(source=source_to_proto(saved))

    async def DeleteSource(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        await self.store.delete_source(request.id)
        log.info("source deleted", extra={"source_id": request.id})
        return executor_service_pb2.DeleteSourceResponse()

    # executions

    async def ExecuteJobDefinition(self, request, context):  # type: ignore[no-untyped-def]
        if not request.job_definition_id:
            raise InvalidArgument.field("job_definition_id", "is required")
        check_ids(request, "job_definition_id", "idempotency_key")
        trigger = trigger_from_proto(request.trigger)
        if trigger == "post_job":
            raise InvalidArgument.field("trigger", "post-jobs are started by TriggerPostJobs")
        execution, replayed = await self.executions.execute(
            request.job_definition_id, trigger=trigger, idempotency_key=request.idempotency_key
        )
        return executor_service_pb2.ExecuteJobDefinitionResponse(
            execution=execution_to_proto(execution), replayed=replayed
        )

    async def GetExecution(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        execution = await self.executions.ledger.get(request.id)
        return executor_service_pb2.GetExecutionResponse(execution=execution_to_proto(execution))

    async def ListExecutions(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "job_definition_id", "parent_execution_id")
        p = page(
            request.limit, request.offset, request.order_by, request.order_dir, allowed=("created_at", "updated_at")
        )
        items, total = await self.executions.ledger.list_executions(
            p,
            job_definition_id=request.job_definition_id or None,
            status=status_from_proto(request.status),
            parent_execution_id=request.parent_execution_id or None,
        )
        return executor_service_pb2.ListExecutionsResponse(
            executions=[execution_to_proto(e) for e in items], total_count=total, limit=p.limit, offset=p.offset
        )

    async def CancelExecution(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        execution = await self.executions.cancel(request.id)
        return executor_service_pb2.CancelExecutionResponse(execution=execution_to_proto(execution))

    async def WatchExecution(self, request, context):  # type: ignore[no-untyped-def]
        check_ids(request, "id")
        if request.after_event_id < 0:
            raise InvalidArgument.field("after_event_id", "must be 0 or more")
        async for item in self.executions.watch(request.id, request.after_event_id, replay=request.replay):
            yield executor_service_pb2.WatchExecutionResponse(
                event=event_to_proto(item.event), execution=execution_to_proto(item.execution)
            )

    async def TriggerPostJobs(self, request, context):  # type: ignore[no-untyped-def]
        if not request.parent_execution_id:
            raise InvalidArgument.field("parent_execution_id", "is required")
        check_ids(request, "parent_execution_id")
        parent = await self.post_jobs.trigger(request.parent_execution_id)
        return executor_service_pb2.TriggerPostJobsResponse(post_jobs=execution_to_proto(parent).post_jobs)

    async def ListWebhookDeliveries(self, request, context):  # type: ignore[no-untyped-def]
        if not request.execution_id:
            raise InvalidArgument.field("execution_id", "is required")
        check_ids(request, "execution_id")
        p = page(request.limit, request.offset, "", "", allowed=("created_at",))
        await self.executions.ledger.get(request.execution_id)  # NotFound for an unknown execution
        items, total = await self.outbox.list(request.execution_id, p.limit, p.offset)
        return executor_service_pb2.ListWebhookDeliveriesResponse(
            deliveries=[delivery_to_proto(d) for d in items], total_count=total, limit=p.limit, offset=p.offset
        )
