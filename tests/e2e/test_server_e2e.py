"""The server runtime as operators meet it: health, reflection, auth, errors, shutdown, start-up checks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc

from payhub.server.unimplemented import FULL_NAMES
from tests.conftest import PG_ADMIN_URL, RunningServer, free_port, new_postgres_database, start_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
EXPECTED_SERVICES = {*FULL_NAMES.values(), "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


def _health(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        return int(health_pb2_grpc.HealthStub(channel).Check(  # type: ignore[attr-defined]
            health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def test_health_reports_every_service_serving(server: RunningServer) -> None:
    for name in ["", *FULL_NAMES.values()]:
        assert _health(server.address, name) == health_pb2.HealthCheckResponse.SERVING, name


def test_reflection_lists_every_service(server: RunningServer) -> None:
    with server.channel() as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = stub.ServerReflectionInfo(iter([request]))  # type: ignore[operator]
        listed = {s.name for reply in replies for s in reply.list_services_response.service}
    assert listed == EXPECTED_SERVICES


@pytest.mark.skipif(not BUF.exists(), reason="buf is installed by `make proto-check` (CI runs it first)")
def test_buf_curl_lists_services_and_describes_a_method(server: RunningServer) -> None:
    url = f"http://{server.address}"
    listed = subprocess.run([str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge",
                             "--list-services", url], capture_output=True, text=True, timeout=60, check=True)
    assert set(listed.stdout.split()) >= EXPECTED_SERVICES
    health = subprocess.run([str(BUF), "curl", "--protocol", "grpc", "--http2-prior-knowledge",
                             f"{url}/grpc.health.v1.Health/Check"], capture_output=True, text=True, timeout=60,
                            check=True)
    assert "SERVING" in health.stdout


def _call_without_auth(server: RunningServer, metadata: tuple[tuple[str, str], ...]) -> grpc.RpcError:
    from payhub.merchant.v1 import merchant_pb2, merchant_pb2_grpc
    with server.channel() as channel:
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ListMerchants(merchant_pb2.ListMerchantsRequest(), metadata=metadata, timeout=5)
    return err.value


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer phk_not_a_key"),),
                                      (("authorization", "Basic abc"),)])
def test_missing_or_unknown_credentials_are_unauthenticated(server: RunningServer,
                                                            metadata: tuple[tuple[str, str], ...]) -> None:
    error = _call_without_auth(server, metadata)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info) and info.domain == "payhub"


def test_metrics_endpoint_counts_rpcs(server: RunningServer) -> None:
    _call_without_auth(server, ())
    port = server.env["PAYHUB_METRICS_LISTEN"].rsplit(":", 1)[1]
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'payhub_rpc_total{code="UNAUTHENTICATED",method="/payhub.merchant.v1.MerchantService/ListMerchants"}' in body


def _healthz(running: RunningServer) -> int:
    try:
        return int(httpx.get(f"http://{running.env['PAYHUB_HTTP_LISTEN']}/healthz", timeout=5).status_code)
    except httpx.ConnectError:
        return 0


def test_sigterm_drains_then_exits_cleanly(tmp_path: Path) -> None:
    running = start_server(tmp_path, extra_env={"PAYHUB_DRAIN_SECONDS": "2"})
    assert _healthz(running) == 200
    running.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    status: int = health_pb2.HealthCheckResponse.SERVING
    while time.monotonic() < deadline and status == health_pb2.HealthCheckResponse.SERVING:
        try:
            status = _health(running.address)
        except grpc.RpcError:
            break
        time.sleep(0.05)
    assert status == health_pb2.HealthCheckResponse.NOT_SERVING
    assert _healthz(running) == 503, "during the drain the HTTP listener still answers, NOT_SERVING"
    assert running.process.wait(30) == 0
    assert _healthz(running) == 0
    assert '"stopped"' in running.logs()


def _serve(env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **env_extra}
    return subprocess.run([sys.executable, "-m", "payhub.cli.main", "serve", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_a_port_already_taken_is_an_error(server: RunningServer, tmp_path: Path) -> None:
    result = _serve({"PAYHUB_DATA_DIR": str(tmp_path), "PAYHUB_LISTEN": server.address,
                     "PAYHUB_HTTP_LISTEN": f"127.0.0.1:{free_port()}"}, "--migrate")
    assert result.returncode == 2
    assert "cannot listen" in result.stderr


def test_an_http_port_already_taken_is_an_error(server: RunningServer, tmp_path: Path) -> None:
    for workers in ("1", "2"):
        result = _serve({"PAYHUB_DATA_DIR": str(tmp_path), "PAYHUB_LISTEN": f"127.0.0.1:{free_port()}",
                         "PAYHUB_HTTP_LISTEN": server.env["PAYHUB_HTTP_LISTEN"]}, "--migrate", "--workers", workers)
        assert result.returncode == 2
        assert "cannot listen" in result.stderr and "PAYHUB_HTTP_LISTEN" in result.stderr


def test_unmigrated_database_is_refused_with_the_fix(tmp_path: Path) -> None:
    result = _serve({"PAYHUB_DATA_DIR": str(tmp_path), "PAYHUB_LISTEN": f"127.0.0.1:{free_port()}",
                     "PAYHUB_HTTP_LISTEN": ""})
    assert result.returncode == 2
    assert "payhub migrate" in result.stderr


def test_workers_share_one_port(tmp_path: Path) -> None:
    running = start_server(tmp_path, args=("--workers", "2"))
    try:
        # start_server saw one worker SERVING; the other may still be starting on a loaded machine.
        deadline = time.monotonic() + 30
        while True:
            statuses = {_health(running.address) for _ in range(10)}
            http_statuses = {_healthz(running) for _ in range(10)}
            if (statuses, http_statuses) == ({health_pb2.HealthCheckResponse.SERVING}, {200}):
                break
            assert time.monotonic() < deadline, f"workers not all serving: grpc {statuses}, http {http_statuses}"
            time.sleep(0.2)
        children = Path(f"/proc/{running.process.pid}/task/{running.process.pid}/children").read_text()
        assert len(children.split()) == 2
    finally:
        assert running.stop() == 0




def _socket_states(port: int) -> list[str]:
    """States of the TCP sockets bound locally to `port` ("0A" LISTEN, "06" TIME_WAIT; grpcio's
    listeners are dual-stack, so they are in /proc/net/tcp6)."""
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}"):
                states.append(fields[3])
    return states


def _leave_time_wait(port: int) -> None:
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the server side closes first: it is the one left in TIME_WAIT
            client.recv(1)


def _wait_for(condition: Any, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(condition())


def test_restart_right_after_kill_9_of_two_workers(tmp_path: Path) -> None:
    """An orchestrator restarting a crashed pod: the dead workers' connections linger in TIME_WAIT,
    which must not make the start-up port check refuse the port; a live server still does."""
    running = start_server(tmp_path, args=("--workers", "2"), own_process_group=True)
    port = int(running.address.rsplit(":", 1)[1])
    # Connections of their own (not one shared subchannel), spread over both workers.
    channels = [grpc.insecure_channel(running.address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(8)]
    try:
        for channel in channels:  # open connections the server side will close first when killed
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)  # type: ignore[attr-defined]
        refused = _serve({**running.env, "PAYHUB_WORKERS": "1"}, "--migrate")
        assert refused.returncode == 2 and "cannot listen" in refused.stderr
        os.killpg(running.process.pid, signal.SIGKILL)
        running.process.wait(10)
    finally:
        for channel in channels:
            channel.close()
    assert _wait_for(lambda: "0A" not in _socket_states(port)), "both workers are gone"
    # A worker killed while its connections were busy leaves them in TIME_WAIT; a connection the kernel
    # reset (unread data) leaves nothing. So that the check meets TIME_WAIT every run, also close one
    # connection on the port the way a dead worker's connection closes (server side first).
    _leave_time_wait(port)
    assert "06" in _socket_states(port)  # what the port check must see through
    again = start_server(tmp_path, extra_env={"PAYHUB_LISTEN": running.address}, args=("--workers", "2"))
    try:
        assert _health(again.address) == health_pb2.HealthCheckResponse.SERVING
    finally:
        assert again.stop() == 0


def test_worker_pools_stay_within_their_share_of_max_connections(tmp_path: Path) -> None:
    """2 workers given 10 % of PostgreSQL's connections: each pool is capped (logged), the server still
    serves concurrent calls, and the database never sees more connections than the share."""
    with new_postgres_database() as url:
        running = start_server(tmp_path, database_url=url, args=("--workers", "2"),
                               extra_env={"PAYHUB_DB_CONNECTION_SHARE": "0.1"})
        try:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                max_connections, reserved = (int(admin.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                                             for name in ("max_connections", "superuser_reserved_connections"))
                budget = int((max_connections - reserved) * 0.1)
                sized = [line for line in running.logs().splitlines() if "database pool sized" in line]
                assert sized and '"capped": true' in sized[0]
                with running.channel() as channel, ThreadPoolExecutor(16) as pool:
                    stub = merchant_pb2_grpc.MerchantServiceStub(channel)
                    calls = [pool.submit(stub.ListMerchants, merchant_pb2.ListMerchantsRequest(),
                                         metadata=running.admin_metadata(), timeout=30) for _ in range(64)]
                    assert all(c.result() is not None for c in calls)
                database = url.rsplit("/", 1)[1]
                used = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                     (database,)).fetchone()[0]  # type: ignore[index]
                assert 0 < used <= budget
        finally:
            assert running.stop() == 0
