"""`payhub simulate alipay` as a real process: it prints (and writes to DIR/config.json) the credentials
a client needs under payhub's credential names, and keeps its keys directory across restarts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from payhub.channel.alipay.adapter import CREDENTIAL_KEYS
from tests.conftest import free_port

pytestmark = pytest.mark.e2e


@dataclass
class SimProcess:
    url: str
    keys: Path
    process: subprocess.Popen[bytes]
    config: dict[str, str]

    def control(self, action: str, **body: object) -> dict[str, object]:
        answer = httpx.post(f"{self.url}/__simulator/{action}", json=body, timeout=10, trust_env=False)
        assert answer.status_code == 200, answer.text
        data = answer.json()
        assert isinstance(data, dict)
        return data

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def start_simulator(keys: Path, *extra: str, channel: str = "alipay") -> SimProcess:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "payhub.cli.main", "simulate", channel, "--listen",
                                f"127.0.0.1:{port}", "--keys", str(keys), "--notify-delay-scale", "0.001", *extra],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"payhub simulate {channel} exited with {process.returncode}")
        try:
            httpx.get(f"{url}/__simulator/clock", timeout=1, trust_env=False)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    config = json.loads((keys / "config.json").read_text())
    return SimProcess(url, keys, process, config)


def test_the_simulator_prints_its_config_with_the_credential_names_and_keeps_it(tmp_path: Path) -> None:
    first = start_simulator(tmp_path / "keys")
    try:
        assert first.process.stdout is not None
        first.stop()
        printed = json.loads(first.process.stdout.read())
    finally:
        if first.process.poll() is None:
            first.stop()
    assert printed == first.config
    assert set(printed) == {key.name for key in CREDENTIAL_KEYS}
    assert printed["gateway_url"] == f"{first.url}/gateway.do"
    again = start_simulator(tmp_path / "keys")
    again.stop()
    assert {k: v for k, v in again.config.items() if k != "gateway_url"} == {
        k: v for k, v in printed.items() if k != "gateway_url"}, "the keys directory is reused"
