"""A channel's HTTP request ends with the RPC that caused it: ChannelHttp's timeout is the configured
one cut to what is left of the call's deadline (payhub.kernel.deadline), so against a simulator whose
answer is held back by a latency fault, a short call deadline gives up while a generous configured
timeout alone would have waited for the answer."""

from __future__ import annotations

import httpx
import pytest

from payhub.channel import simkit
from payhub.channel.simkit import ControlClient, Faults, Notifier, SimClock
from payhub.channel.transport import ChannelHttp
from payhub.kernel import deadline
from tests.unit.channel.test_simkit import protocol_app


def test_the_call_deadline_cuts_the_channel_timeout() -> None:
    notifier = Notifier([60], scale=0.001)
    http = ChannelHttp("sim", total_seconds=60.0)
    try:
        with simkit.running(protocol_app(Faults(), notifier, SimClock(), "http://127.0.0.1:9/none")) as sim, \
                ControlClient(sim.url) as control:
            url = f"{sim.url}/gateway.do"
            control.call("faults", kind="latency", seconds=2.0, match="gateway")
            token = deadline.enter(0.3)
            try:
                with pytest.raises(httpx.ReadTimeout):  # the configured 60 s would have waited 2 s for "ok"
                    http.send("POST", url)
            finally:
                deadline.leave(token)
            assert deadline.remaining() is None, "the deadline ends with the call"
            assert http.send("POST", url).text == "ok", "without a call deadline the configured timeout applies"
    finally:
        http.close()
        notifier.stop()


def test_no_deadline_and_a_far_one_leave_the_configured_timeout() -> None:
    assert deadline.enter(None) is None and deadline.bounded(10.0) == 10.0
    assert deadline.enter(10 ** 9) is None, "a client without a deadline shows up as one decades away"
    token = deadline.enter(5.0)
    try:
        assert deadline.bounded(10.0) <= 5.0 and deadline.bounded(1.0) == 1.0
    finally:
        deadline.leave(token)
