"""Build gRPC servers and channels: health, reflection, request ids, domain-error mapping, metrics,
the bearer token and TLS."""

from __future__ import annotations

import asyncio
import gc
import hmac
import inspect
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import uvloop
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from libs import metrics
from libs.errors import INTERNAL_STATUS, InvalidArgument, QuaeroError, Unauthenticated
from libs.logs import REQUEST_ID_HEADER, adopt_request_id, current_request_id, request_context, service_var
from libs.settings import CommonSettings

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


AUTHORIZATION = "authorization"
# Health checking answers without the token (load balancers and container probes have none);
# everything else, reflection included (it lists the API), requires it.
_OPEN_PREFIX = "/grpc.health.v1.Health/"


@dataclass(frozen=True)
class GrpcAccess:
    """How a process's gRPC servers admit callers and its channels reach other services: the
    bearer token (QUAERO_API_TOKEN) and TLS (QUAERO_GRPC_TLS_*). The default admits anyone in
    plaintext, as the servers of most tests do."""

    token: str | None = field(default=None, repr=False)
    # PEM bytes: the servers' certificate chain and key, and the roots clients trust.
    certificate: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)
    roots: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: CommonSettings) -> GrpcAccess:
        """Read the TLS files once, at start-up."""
        return cls(
            token=settings.api_token,
            certificate=settings.grpc_tls_cert.read_bytes() if settings.grpc_tls_cert else None,
            private_key=settings.grpc_tls_key.read_bytes() if settings.grpc_tls_key else None,
            roots=settings.grpc_tls_ca.read_bytes() if settings.grpc_tls_ca else None,
        )

    @property
    def tls(self) -> bool:
        """Whether channels use TLS: when this process serves it, or names the roots to trust
        (without them, the system's)."""
        return self.certificate is not None or self.roots is not None

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """TLS credentials for the servers, or None to serve plaintext."""
        if self.certificate is None or self.private_key is None:
            return None
        return grpc.ssl_server_credentials([(self.private_key, self.certificate)])

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials for channels, or None to connect in plaintext."""
        return grpc.ssl_channel_credentials(root_certificates=self.roots) if self.tls else None


def _metadata_value(metadata: Sequence[tuple[str, Any]] | None, key: str) -> str | None:
    for k, v in metadata or ():
        if k == key:
            return v if isinstance(v, str) else v.decode()
    return None


@dataclass(frozen=True)
class _Undecodable:
    """A request that did not decode (nested past protobuf's limit, or a string that is not
    UTF-8): its handler answers INVALID_ARGUMENT instead of grpc's UNKNOWN with the parser's text."""

    reason: str

    def error(self) -> InvalidArgument:
        if "MaxDepth" in self.reason:
            return InvalidArgument.field("request", "is nested too deeply to decode")
        if "UTF-8" in self.reason:
            return InvalidArgument.field("request", "holds a string that is not valid UTF-8")
        return InvalidArgument.field("request", "is not a valid protobuf message")


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """For a unary request: an undecodable one becomes an _Undecodable for the handler to refuse."""
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return deserialize


def refusal(method: str, metadata: Sequence[tuple[str, Any]] | None, token: str | None) -> str | None:
    """Why a call to `method` with this metadata may not proceed, or None if it may."""
    if token is None or method.startswith(_OPEN_PREFIX):
        return None
    scheme, _, presented = (_metadata_value(metadata, AUTHORIZATION) or "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        return "an API token is required: send `authorization: Bearer <token>` metadata"
    # Constant time, so the answer's timing tells nothing about how much of a guess was right.
    if not hmac.compare_digest(presented.encode(), token.encode()):
        return "wrong API token"
    return None


class _ServerInterceptor(grpc.aio.ServerInterceptor):
    """Per call: adopt the caller's request id, check the token, map domain errors to statuses,
    count the call."""

    def __init__(self, service: str, token: str | None) -> None:
        self.service = service
        self.token = token

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        # A streamed request's messages are decoded as the servicer reads them: left as they are.
        deserializer = (
            _tolerant(handler.request_deserializer)
            if handler.unary_unary or handler.unary_stream
            else handler.request_deserializer
        )
        rid = adopt_request_id(_metadata_value(handler_call_details.invocation_metadata, REQUEST_ID_HEADER))
        refused = refusal(method, handler_call_details.invocation_metadata, self.token)
        service = self.service

        if handler.unary_unary or handler.stream_unary:
            inner = handler.unary_unary or handler.stream_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                code = "OK"
                with request_context(rid):
                    service_var.set(service)
                    try:
                        if refused:
                            raise Unauthenticated(refused)
                        if isinstance(request, _Undecodable):
                            raise request.error()
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
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )

        inner_stream = handler.unary_stream or handler.stream_stream

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            code = "OK"
            with request_context(rid):
                service_var.set(service)
                try:
                    if refused:
                        raise Unauthenticated(refused)
                    if isinstance(request, _Undecodable):
                        raise request.error()
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
            request_deserializer=deserializer,
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


async def start_grpc_server(
    address: str, registrations: Iterable[Registration], *, service: str, access: GrpcAccess | None = None
) -> GrpcServer:
    """Start a server on `address` ("host:0" picks a free port) with health and reflection,
    admitting callers as `access` says (default: anyone, in plaintext)."""
    access = access or GrpcAccess()
    server = grpc.aio.server(interceptors=[_ServerInterceptor(service, access.token)], options=_SERVER_OPTIONS)
    names: list[str] = []
    for servicer, add, name in registrations:
        add(servicer, server)
        names.append(name)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME], server
    )
    credentials = access.server_credentials()
    port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"could not bind gRPC server to {address}")
    await server.start()
    for name in ["", *names]:
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "gRPC server listening",
        extra={
            "address": address.rsplit(":", 1)[0] + f":{port}",
            "services": names,
            "tls": credentials is not None,
            "token_required": access.token is not None,
        },
    )
    return GrpcServer(server=server, port=port, health=health, service_names=names)


class _CallMetadata:
    """Carries the current request id and the bearer token to the callee in gRPC metadata, and
    gives unary calls made without a deadline the channel's default one (streams are long-lived
    by design)."""

    def __init__(self, unary_timeout: float | None = None, token: str | None = None) -> None:
        self.unary_timeout = unary_timeout
        self.authorization = f"Bearer {token}" if token else None

    def _details(self, details: grpc.aio.ClientCallDetails, timeout: float | None = None) -> grpc.aio.ClientCallDetails:
        added = [
            (key, value)
            for key, value in ((REQUEST_ID_HEADER, current_request_id()), (AUTHORIZATION, self.authorization))
            if value and _metadata_value(details.metadata, key) is None
        ]
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *added) if added else details.metadata
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
class _UnaryUnary(_CallMetadata, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details, self.unary_timeout), request)


class _UnaryStream(_CallMetadata, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request)


class _StreamUnary(_CallMetadata, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStream(_CallMetadata, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation, client_call_details, request_iterator):  # type: ignore[no-untyped-def]
        return await continuation(self._details(client_call_details), request_iterator)


def open_channel(
    target: str, access: GrpcAccess | None = None, *, unary_timeout: float | None = None
) -> grpc.aio.Channel:
    """A channel that sends the request id and `access`'s token (over TLS when `access` says so)
    and keeps long streams alive; unary calls without a deadline of their own get `unary_timeout`
    seconds (None: no deadline)."""
    access = access or GrpcAccess()
    interceptors = [
        kind(unary_timeout, access.token) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)
    ]
    credentials = access.channel_credentials()
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS, interceptors=interceptors)


def run_process(serve: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `serve(stop)` until SIGTERM or SIGINT sets `stop`; `serve` then shuts down gracefully.

    The event loop is uvloop's: the services are I/O bound (asyncpg, aio-pika, aiohttp, gRPC) and
    uvloop runs that I/O with a fraction of the default loop's CPU."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # What the imports made lives as long as the process: out of the collector's sight, a
        # full collection (a pause of the event loop, of a few hundred milliseconds once a
        # page with 100,000 links fills the heap) only walks what the work allocates.
        gc.freeze()
        await serve(stop)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner_:
        runner_.run(runner())
