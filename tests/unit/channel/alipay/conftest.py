"""A running Alipay simulator (real HTTP on loopback) with one merchant app registered."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from payhub.channel import simkit
from payhub.channel.alipay.simulator import AlipaySimulator
from payhub.channel.simkit import ControlClient


@dataclass
class Sim:
    simulator: AlipaySimulator
    url: str
    control: ControlClient
    creds: dict[str, str]

    @property
    def gateway(self) -> str:
        return self.creds["gateway_url"]


@pytest.fixture
def sim() -> Iterator[Sim]:
    yield from running_simulator(exists_after_scan=False)


@pytest.fixture
def strict_sim() -> Iterator[Sim]:
    """A QR trade exists for query/close only once the buyer scans it, as at Alipay."""
    yield from running_simulator(exists_after_scan=True)


def running_simulator(*, exists_after_scan: bool) -> Iterator[Sim]:
    simulator = AlipaySimulator(rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                notify_delay_scale=0.0005, exists_after_scan=exists_after_scan)
    served = simkit.serve_in_thread(simulator.app())
    simulator.base_url = served.url
    control = ControlClient(served.url)
    try:
        yield Sim(simulator, served.url, control, simulator.new_app())
    finally:
        control.close()
        served.stop()
        simulator.stop()
