"""Build gRPC servers and channels: health, reflection, request ids, domain-error mapping, metrics."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import uvloop
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from libs import metrics
from libs.errors import INTERNAL_STATUS, QuaeroError
from libs.logs import REQUEST_ID_HEADER, adopt_request_id, current_request_id, request_context, service_var

log = logging.getLogger(__name__)

# A servicer and the generated function that registers it, e.g.
# (svc, executor_service_pb2_grpc.add_ExecutorServiceServicer_to_server, "quaero.v1.ExecutorService").
Registration = tuple[Any, Callable[[Any, grpc.aio.Server], None], str]

_MAX_MESSAGE = 32 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
_SERVER_OPTIONS = [
    ("grpc.max_send_message_length", _MAX_MESSAGE),
    ("grpc.max_receive_message_length", _MAX_MESSAGE),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]


def _metadata_value(metadata: Sequence[tuple[str, Any]] | None, key: str) -> str | None:
    for k, v in metadata or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return None


class _ServerInterceptor(grpc.aio.ServerInterceptor):
    """Per call: adopt the caller's request id, map domain errors to statuses, count the call."""

    def __init__(self, service: str) -> None:
        self.service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        rid = adopt_request_id(_metadata_value(handler_call_details.invocation_metadata, REQUEST_ID_HEADER))
        service = self.service

        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                code = "OK"
                with request_context(rid):
                    service_var.set(service)
                    try:
                        return await inner(request, context)
                    except QuaeroError as exc:
                        code = exc.code.name
                        await context.abort_with_status(rpc_status.to_status(exc.to_status()))
                    except (asyncio.CancelledError, grpc.aio.AbortError):
                        code = "CANCELLED"
                        raise
                    except NotImplementedError:
                        # The generated base servicer's answer for an RPC a later release implements.
                        code = "UNIMPLEMENTED"
                        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
                    except Exception:
                        code = "INTERNAL"
                        log.exception("unhandled error in %s", method)
                        await context.abort_with_status(rpc_status.to_status(INTERNAL_STATUS))
                    finally:
                        metrics.observe_rpc(service, method, code, time.perf_counter() - started)

            factory = (
                grpc.unary_unary_rpc_method_handler if handler.unary_unary else grpc.stream_unary_rpc_method_handler
            )
            return factory(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

        inner_stream = handler.unary_stream or handler.stream_stream

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = "OK"
            with request_context(rid):
                service_var.set(service)
                try:
                    responses = inner_stream(request, context)
                    if inspect.isawaitable(responses):
                        # A handler that sends with context.write() (the health servicer's Watch).
                        await responses
                    else:
                        async for response in responses:
                            yield response
                except QuaeroError as exc:
                    code = exc.code.name
                    await context.abort_with_status(rpc_status.to_status(exc.to_status()))
                except (asyncio.CancelledError, grpc.aio.AbortError):
                    code = "CANCELLED"
                    raise
                except NotImplementedError:
                    code = "UNIMPLEMENTED"
                    await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
                except Exception:
                    code = "INTERNAL"
                    log.exception("unhandled error in %s", method)
                    await context.abort_with_status(rpc_status.to_status(INTERNAL_STATUS))
                finally:
                    metrics.observe_rpc(service, method, code, time.perf_counter() - started)

        factory = (
            grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
        )
        return factory(
            streaming,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass
class GrpcServer:
    """A started server, the port it bound and its health servicer."""

    server: grpc.aio.Server
    port: int
    health: health_aio.HealthServicer
    service_names: list[str] = field(default_factory=list)

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, let in-flight calls finish within `grace` seconds, then close."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_grpc_server(address: str, registrations: Iterable[Registration], *, service: str) -> GrpcServer:
    """Start a server on `address` ("host:0" picks a free port) with health and reflection."""
    server = grpc.aio.server(interceptors=[_ServerInterceptor(service)], options=_SERVER_OPTIONS)
    names: list[str] = []
    for servicer, add, name in registrations:
        add(servicer, server)
        names.append(name)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC server to {address}")
    await server.start()
    for name in ["", *names]:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC server listening", extra={"address": address.rsplit(":", 1)[0] + f":{port}", "services": names})
    return GrpcServer(server=server, port=port, health=health, service_names=names)


class _RequestIdMetadata:
    """Carries the current request id to the callee in gRPC metadata, and gives unary calls made
    without a deadline the channel's default one (streams are long-lived by design)."""

    def __init__(self, unary_timeout: float | None = None) -> None:
        self.unary_timeout = unary_timeout

    @staticmethod
    def _details(details: grpc.aio.ClientCallDetails, timeout: float | None = None) -> grpc.aio.ClientCallDetails:
        rid = current_request_id()
        metadata = details.metadata
        if rid and (metadata is None or REQUEST_ID_HEADER not in metadata):
            metadata = grpc.aio.Metadata(*(metadata or ()))
            metadata.add(REQUEST_ID_HEADER, rid)
        if metadata is details.metadata and (timeout is None or details.timeout is not None):
            return details
        return grpc.aio.ClientCallDetails(
            details.method,
            details.timeout if details.timeout is not None else timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
        )


# One class per kind of call: a channel files an interceptor under the first kind it is an
# instance of, so one class implementing all four would only ever see unary-unary calls.
class _UnaryUnary(_RequestIdMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details, self.unary_timeout), request)


class _UnaryStream(_RequestIdMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request)


class _StreamUnary(_RequestIdMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStream(_RequestIdMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request_iterator)


def insecure_channel(target: str, *, unary_timeout: float | None = None) -> grpc.aio.Channel:
    """A channel that forwards the request id and keeps long streams alive; unary calls without a
    deadline of their own get `unary_timeout` seconds (None: no deadline)."""
    interceptors = [kind(unary_timeout) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=interceptors)


def run_process(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `serve(stop)` until SIGTERM or SIGINT sets `stop`; `serve` then shuts down gracefully.

    The event loop is uvloop's: the services are I/O bound (asyncpg, aio-pika, aiohttp, gRPC) and
    uvloop runs that I/O with a fraction of the default loop's CPU."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(stop)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner_:
        runner_.run(runner())
