"""`payhub serve`: one gRPC server per process hosting the configured services, and beside it the
HTTP edge (payhub.web: channel callbacks, later the cashier pages) on PAYHUB_HTTP_LISTEN.

With --workers N the parent checks the ports, then forks N processes before any gRPC object exists;
each binds the same ports with SO_REUSEPORT and the kernel spreads connections over them. With one
worker SO_REUSEPORT is off, so a port that is already taken is an error, not a silent shared bind.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import sys
import threading
import time
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from payhub.kernel.config import Settings
from payhub.kernel.db import overflow_for, pool_size_within
from payhub.kernel.dispatcher import BACKLOG_SECONDS, INTERVAL_SECONDS, OutboxDispatcher, subscriptions_of
from payhub.kernel.logging import configure_logging, get_logger
from payhub.kernel.migrate import is_migrated, upgrade
from payhub.server.context import AppContext
from payhub.server.health import Readiness
from payhub.server.interceptors import CallPipeline
from payhub.server.jobs import Job, JobRunner
from payhub.web.app import build_app
from payhub.web.server import HttpServer, bind_socket

log = get_logger("payhub.server")

MAX_MESSAGE_BYTES = 8 * 1024 * 1024


class StartupError(Exception):
    """The server cannot start; the message says how to fix it."""


def _split(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an explicit ":PORT" means all


def _check_port_free(listen: str) -> None:
    """Refuse a port another server listens on. SO_REUSEADDR, as grpcio's own listeners set it: the
    connections of a server that just died (kill -9, a crashed pod) linger in TIME_WAIT for a minute
    and must not block its restart, while a live listener still makes bind() fail (Linux refuses
    SO_REUSEADDR binds next to a socket in LISTEN; the probe never sets SO_REUSEPORT, so it cannot
    join a running --workers group either)."""
    host, port = _split(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(f"cannot listen on {listen}: {exc.strerror}") from exc


def prepare_database(settings: Settings, migrate: bool) -> Settings:
    """Migrate (or check the migration of) the database, and return the settings with the pool sized
    to what PostgreSQL allows (see `fit_pool`)."""
    ctx_db = AppContext.create(settings).db
    try:
        if migrate:
            upgrade(settings.effective_database_url)
        elif not is_migrated(ctx_db):
            raise StartupError("the database is not migrated to this version of payhub: run "
                               "`payhub migrate` (or `payhub serve --migrate`) first")
        return fit_pool(settings, ctx_db.connection_limits())
    finally:
        ctx_db.dispose()


def fit_pool(settings: Settings, limits: tuple[int, int] | None) -> Settings:
    """Cap each worker's PostgreSQL pool so that all workers together stay within
    `db_connection_share` of `max_connections` (a few server processes with 24 + 12 connections
    each would otherwise use up PostgreSQL's default 100)."""
    if limits is None:
        return settings
    max_connections, reserved = limits
    workers = max(settings.workers, 1)
    size = pool_size_within(max_connections, reserved, settings.db_connection_share, workers, settings.db_pool_size)
    log.info("database pool sized", max_connections=max_connections, reserved=reserved,
             share=settings.db_connection_share, workers=workers, pool_size=size,
             max_overflow=overflow_for(size), capped=size < settings.db_pool_size)
    if size < settings.threads + 8:
        log.warning("database pool smaller than threads + 8: calls may wait for a connection",
                    pool_size=size, threads=settings.threads)
    return settings.replace(db_pool_size=size)


def serve(settings: Settings, *, migrate: bool = False) -> int:
    configure_logging(settings.log_level, settings.log_format)
    try:
        settings.served_services()
        _check_port_free(settings.listen)
        if settings.http_listen:
            try:
                _check_port_free(settings.http_listen)
            except StartupError as exc:
                raise StartupError(f"{exc} (PAYHUB_HTTP_LISTEN)") from exc
        settings = prepare_database(settings, migrate)
    except (StartupError, ValueError) as exc:
        print(f"payhub serve: {exc}", file=sys.stderr)
        return 2
    if settings.workers <= 1:
        return run_worker(settings, worker=0, reuse_port=False)
    return _supervise(settings)


def _supervise(settings: Settings) -> int:
    children = []
    for worker in range(settings.workers):
        pid = os.fork()
        if pid == 0:
            code = run_worker(settings, worker=worker, reuse_port=True)
            os._exit(code)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    worst = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        worst = max(worst, os.waitstatus_to_exitcode(status))
    return worst


def build_server(ctx: AppContext, *, reuse_port: bool) -> tuple[grpc.Server, Readiness]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=ctx.settings.threads, thread_name_prefix="rpc"),
        options=[("grpc.so_reuseport", 1 if reuse_port else 0),
                 ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    # Every service is added through the call pipeline, which wraps each handler once as it is
    # registered (no interceptor runs on gRPC's polling thread per call).
    services = CallPipeline(ctx.credentials).serve_on(server)
    components = ctx.components()
    for component in components:
        component.add_to_server(services)
    readiness = Readiness(ctx.db, [c.full_name for c in components],
                          listeners=["http"] if ctx.settings.http_listen else [])
    health_pb2_grpc.add_HealthServicer_to_server(readiness.servicer, services)
    reflection.enable_server_reflection(
        [*(c.full_name for c in components), health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME], services)
    try:
        bound = server.add_insecure_port(ctx.settings.listen)
    except RuntimeError as exc:
        raise StartupError(f"cannot listen on {ctx.settings.listen}: {exc}") from exc
    if bound == 0:
        raise StartupError(f"cannot listen on {ctx.settings.listen}: the address is taken or invalid")
    return server, readiness


def build_http_server(ctx: AppContext, readiness: Readiness, *, reuse_port: bool) -> HttpServer | None:
    """The HTTP edge on PAYHUB_HTTP_LISTEN (None when it is empty), its socket bound now."""
    listen = ctx.settings.http_listen
    if not listen:
        return None
    try:
        sock = bind_socket(*_split(listen), reuse_port=reuse_port)
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot listen on {listen} (HTTP): {getattr(exc, 'strerror', None) or exc}") from exc
    app = build_app(ctx.http_routes(), ready=lambda: readiness.ready,
                    hsts=ctx.settings.effective_public_base_url.startswith("https://"))
    return HttpServer(app, sock, grace_seconds=ctx.settings.grace_seconds,
                      on_state=lambda up: readiness.listener("http", up))


def background_jobs(ctx: AppContext) -> list[Job]:
    jobs: list[Job] = []
    for component in ctx.components():
        jobs.extend(component.jobs())
    subscriptions = subscriptions_of(ctx.components())
    if subscriptions:  # one reader of the outbox for every consumer served here (payhub.kernel.dispatcher)
        dispatcher = OutboxDispatcher(ctx.db, subscriptions)
        jobs.append(Job("outbox-dispatcher", INTERVAL_SECONDS, dispatcher.tick, busy_interval=BACKLOG_SECONDS,
                        close=dispatcher.close))
    return jobs


# Cyclic garbage collection in a serving worker (measured under the `pay` bench, 2 workers): with
# CPython's defaults (a young collection every 700 net allocations) collections cost ~0.2 ms of CPU per
# payment, ~5 % of the server's, and each full collection walks the ~140k objects of the loaded
# application (70-100 ms holding the GIL, every few seconds under load). Everything built before
# serving (modules, descriptors, SQL constructs, caches) lives as long as the process: it is frozen
# out of the collector, and young collections run every YOUNG_COLLECTION_THRESHOLD allocations (per
# collection they cost about the same, and most short-lived objects are gone by then). Reference
# counting still frees everything that is not in a cycle at once; cycles wait a little longer.
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_heap() -> None:
    """Collect what start-up left behind, then keep the survivors out of future collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, old)


def run_worker(settings: Settings, *, worker: int, reuse_port: bool) -> int:
    ctx = AppContext.create(settings)
    try:
        server, readiness = build_server(ctx, reuse_port=reuse_port)
        http = build_http_server(ctx, readiness, reuse_port=reuse_port)
    except StartupError as exc:
        print(f"payhub serve: {exc}", file=sys.stderr)
        return 2
    if settings.metrics_listen:
        host, port = _split(settings.metrics_listen)
        start_http_server(port + worker, addr=host)
    runner = JobRunner(background_jobs(ctx) if settings.background_workers else [])
    settle_heap()
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start()
    if http is not None:
        try:
            http.start()
        except RuntimeError as exc:
            print(f"payhub serve: {exc}", file=sys.stderr)
            server.stop(0)
            return 2
    readiness.start()
    runner.start()
    log.info("serving", listen=settings.listen, http_listen=settings.http_listen, worker=worker, pid=os.getpid(),
             services=[c.full_name for c in ctx.components()])
    while not stopping.wait(0.5):
        pass
    log.info("shutting down", drain_seconds=settings.drain_seconds, grace_seconds=settings.grace_seconds)
    readiness.shutdown()
    time.sleep(settings.drain_seconds)
    if http is not None:
        http.stop()  # stops accepting; requests in flight get the same grace as gRPC calls
    server.stop(settings.grace_seconds).wait()
    if http is not None and not http.join(settings.grace_seconds + 2):
        log.warning("HTTP server still busy after the grace period")
    runner.stop()
    ctx.db.dispose()
    log.info("stopped")
    return 0
