"""One class that assembles a service's gRPC server.

`ServiceServer` adds the servicers, grpc.health.v1 health checking, server
reflection and a request-id interceptor, listens on a port and shuts down
gracefully on SIGTERM or SIGINT: health turns NOT_SERVING, `on_stopping`
hooks hand long work back, new calls are rejected and running calls get
`grace_seconds` to finish. A call still running after that has already been
cancelled for its client, so `serve_forever` does not wait for its thread.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import uuid
from concurrent import futures
from typing import Callable, Iterable

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "x-request-id"
# Time the call threads get to end after the grace period before the process exits without them.
EXIT_SECONDS = 2.0


class RequestIdInterceptor(grpc.ServerInterceptor):
    """Bind a request id and the method name to structlog's context for each call.

    The id comes from the `x-request-id` metadata when a client sends one, so a
    request can be followed across services; otherwise it is generated.
    """

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        metadata = dict(handler_call_details.invocation_metadata or ())
        request_id = metadata.get(REQUEST_ID_HEADER) or uuid.uuid4().hex[:16]
        method = handler_call_details.method

        def bind(behavior, streaming_response):
            if behavior is None:
                return None

            if streaming_response:
                def stream_behavior(request_or_iterator, context):
                    with structlog.contextvars.bound_contextvars(request_id=request_id, method=method):
                        yield from behavior(request_or_iterator, context)
                return stream_behavior

            def unary_behavior(request_or_iterator, context):
                with structlog.contextvars.bound_contextvars(request_id=request_id, method=method):
                    return behavior(request_or_iterator, context)
            return unary_behavior

        return handler._replace(
            unary_unary=bind(handler.unary_unary, False),
            unary_stream=bind(handler.unary_stream, True),
            stream_unary=bind(handler.stream_unary, False),
            stream_stream=bind(handler.stream_stream, True),
        )


class ServiceServer:
    """A gRPC server with health, reflection, logging context and graceful stop.

    Parameters
    ----------
    name : str
        Service name for logs.
    port : int
        Port to listen on; 0 picks a free one (see `bound_port`).
    host : str
        Interface to bind; default all IPv4 interfaces of loopback only.
    max_workers : int
        Threads serving calls. Streaming calls hold a thread each.
    grace_seconds : float
        Time running calls get to finish on stop.
    """

    def __init__(self, name: str, port: int, host: str = "127.0.0.1", max_workers: int = 32,
                 grace_seconds: float = 10.0):
        self.name = name
        self.host = host
        self.grace_seconds = grace_seconds
        self._executor = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=name)
        self._server = grpc.server(
            self._executor,
            interceptors=[RequestIdInterceptor()],
            options=[("grpc.so_reuseport", 0)],
        )
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._service_names: list[str] = [health.SERVICE_NAME, reflection.SERVICE_NAME]
        self._requested_port = port
        self.bound_port: int | None = None
        self._on_stopping: list[Callable[[], None]] = []
        self._on_stop: list[Callable[[], None]] = []
        self._stopped = threading.Event()

    def add_service(self, add_to_server: Callable, servicer, full_name: str) -> None:
        """Register a servicer, e.g. `add_service(add_FooServicer_to_server, impl, "automl.v1.Foo")`."""
        add_to_server(servicer, self._server)
        self._service_names.append(full_name)

    def on_stopping(self, callback: Callable[[], None]) -> None:
        """Run `callback` once health is NOT_SERVING, before running calls get their grace period.

        Use it for work that will not end within the grace period, such as
        streams and long iterations, to end that work now and return it to its clients.
        """
        self._on_stopping.append(callback)

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Run `callback` after the server stops taking calls, before the process exits."""
        self._on_stop.append(callback)

    def start(self) -> int:
        """Bind, enable reflection, mark every service SERVING and return the bound port."""
        reflection.enable_server_reflection(self._service_names, self._server)
        self.bound_port = self._server.add_insecure_port(f"{self.host}:{self._requested_port}")
        if self.bound_port == 0:
            raise OSError(f"{self.name} could not bind {self.host}:{self._requested_port}; is the port in use?")
        self._server.start()
        self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("server_started", server=self.name, address=f"{self.host}:{self.bound_port}")
        return self.bound_port

    def stop(self) -> None:
        """Stop gracefully: NOT_SERVING, refuse new calls, let running calls finish, run stop hooks."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("server_stopping", server=self.name, grace_seconds=self.grace_seconds)
        self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        self._run_hooks(self._on_stopping)
        self._server.stop(self.grace_seconds).wait()
        self._run_hooks(self._on_stop)
        log.info("server_stopped", server=self.name)

    def _run_hooks(self, callbacks: list[Callable[[], None]]) -> None:
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("stop_hook_failed", server=self.name)

    def serve_forever(self, signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Start, then block until one of `signals` arrives and stop gracefully."""
        if self.bound_port is None:
            self.start()
        stop_requested = threading.Event()
        for signum in signals:
            signal.signal(signum, lambda *_: stop_requested.set())
        stop_requested.wait()
        self.stop()
        self._exit_without_abandoned_calls()

    def _exit_without_abandoned_calls(self) -> None:
        # The interpreter joins the executor's threads at exit, so one call that ignores its
        # cancellation (a long SHAP computation) would keep the process alive after the grace period.
        shutdown = threading.Thread(target=self._executor.shutdown, kwargs={"cancel_futures": True}, daemon=True)
        shutdown.start()
        shutdown.join(EXIT_SECONDS)
        if shutdown.is_alive():
            log.warning("server_exit_forced", server=self.name, reason="calls still running after the grace period",
                        grace_seconds=self.grace_seconds)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    def _set_health(self, status) -> None:
        for service in [""] + [s for s in self._service_names if s.startswith("automl.")]:
            self._health.set(service, status)


def wait_until_serving(address: str, timeout: float = 30.0, service: str = "") -> None:
    """Block until the gRPC health check at `address` returns SERVING.

    Raises
    ------
    TimeoutError
        When it does not within `timeout` seconds.
    """
    import time

    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{address} did not report SERVING within {timeout:.0f} s")
            time.sleep(0.1)
