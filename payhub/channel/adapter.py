"""The one interface every channel adapter implements (Hyperswitch's connector model, in Python).

An adapter translates payhub's channel vocabulary (payhub.channel.types) into one channel's wire
protocol and back. It is stateless: everything it needs per call arrives as arguments (the
instruction and the merchant's `ChannelCredentials`), everything per deployment at construction
(`AdapterEnvironment`). It returns honest outcomes (types.Outcome): SUCCEEDED only when the channel
said the money moved, FAILED only when it definitely did not, UNKNOWN whenever it may have.

Adapters are registered under the entry-point group `payhub.channels`; the entry point names a
callable taking an `AdapterEnvironment` and returning the adapter (usually the adapter class):

    [project.entry-points."payhub.channels"]
    sandbox = "payhub.channel.sandbox.adapter:SandboxAdapter"

Adapters do not check a response's amount and currency against the request: the router does that
for every result, so no adapter can forget it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from payhub.channel.types import ChannelResult, ChannelUpdate, PaymentInstruction, PayoutInstruction
from payhub.kernel.config import Settings
from payhub.kernel.db import Database
from payhub.kernel.errors import PayhubError


@dataclass(frozen=True)
class Capabilities:
    """What a channel supports. Method and client type names are the proto enum names without
    their prefix ("CARD", "PC"); amounts are minor units of the payment's currency."""

    methods: frozenset[str]
    client_types: frozenset[str]
    currencies: frozenset[str]
    supports_preauth: bool = False
    installment_periods: frozenset[int] = frozenset()
    partial_refund: bool = True
    min_amount_minor: int = 1
    max_amount_minor: int = 10**12


@dataclass(frozen=True)
class CredentialKey:
    """One key of a channel's credentials, named exactly as the channel names it (e.g. Alipay's
    `app_private_key`), so operators and other tools configure payhub with the channel's own words.
    `kind` says how ConfigureChannel checks the value: "text", "url" (http(s); plain http is for a
    simulator on loopback), "private_key" (PEM, PKCS#8 or PKCS#1), "public_key" (PEM),
    "certificate" (PEM), "key_and_certificate" (PEM private key + certificate), "secret" (opaque).
    Credentials are write-only whatever the kind: ListChannels shows names, never values."""

    name: str
    required: bool = True
    kind: str = "text"
    description: str = ""


@dataclass(frozen=True)
class ChannelCredentials:
    """One merchant's account at a channel: the decrypted credentials of its channel configuration
    (never logged: repr hides them) and where the channel should send notifications."""

    merchant_id: str
    values: Mapping[str, str] = field(default_factory=dict, repr=False)
    notify_url: str = ""

    def get(self, key: str, default: str = "") -> str:
        return self.values.get(key, default)


@dataclass(frozen=True)
class AdapterEnvironment:
    """What an adapter gets once, at construction. `db` is only for simulated channels (the
    sandbox keeps its simulated bank's book there); real adapters talk to their base URL."""

    settings: Settings
    db: Database
    # Other payhub services by name (AppContext.client), for internal channels such as the wallet,
    # which moves money through the settlement client. None outside a server (tests, tools).
    clients: Callable[[str], Any] | None = None

    def notify_url(self, channel: str, merchant_id: str) -> str:
        """The callback URL payhub's HTTP endpoint serves for one channel and merchant."""
        return f"{self.settings.effective_public_base_url}/channels/{channel}/notify/{merchant_id}"


@dataclass(frozen=True)
class HttpReply:
    """The HTTP answer a channel expects to a notification (e.g. Alipay wants the body `success`)."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class NotificationRejected(PayhubError):
    """A notification that is forged (signature does not verify) or malformed. It changes nothing;
    the router answers the channel with the adapter's failure reply and logs it."""

    default_reason = "NOTIFICATION_REJECTED"


class ChannelNotReached(Exception):
    """Raise from an adapter operation when the request certainly never reached the channel
    (connection refused, misconfiguration found before sending). The router turns it into FAILED
    with failure_code `channel_unreachable` and retryable_elsewhere=True, so a payment fails over.
    Any other exception means the request may have arrived: the router answers UNKNOWN."""


class ChannelAdapter(ABC):
    """One channel. Subclasses set `name` (the registry name) and `display_name`."""

    name: str = ""
    display_name: str = ""

    @abstractmethod
    def capabilities(self) -> Capabilities: ...

    def credential_keys(self) -> tuple[CredentialKey, ...]:
        """The credential keys a merchant's configuration of this channel holds (none by default)."""
        return ()

    def validate_credentials(self, values: Mapping[str, str]) -> dict[str, str]:
        """Problems with a configuration's credentials, by key (empty: valid). The default checks that
        every required key is present; adapters add format checks (PEM parses, URL is a URL)."""
        return {key.name: "is required" for key in self.credential_keys()
                if key.required and not values.get(key.name, "").strip()}

    @abstractmethod
    def pay(self, instruction: PaymentInstruction, credentials: ChannelCredentials) -> ChannelResult:
        """Charge (capture=True) or authorise (capture=False). The channel's out_trade_no is
        `instruction.attempt_id`; sending the same attempt again must not charge twice."""

    @abstractmethod
    def query(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        """The attempt's state at the channel; the amount is what the payment took or holds."""

    @abstractmethod
    def capture(self, attempt_id: str, amount_minor: int, currency: str,
                credentials: ChannelCredentials) -> ChannelResult:
        """Capture all or part of an authorisation; the rest is released. Amount: captured."""

    @abstractmethod
    def void(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        """Release an authorisation. SUCCEEDED: released (amount: what was authorised)."""

    @abstractmethod
    def close(self, attempt_id: str, credentials: ChannelCredentials) -> ChannelResult:
        """Close an unpaid attempt. SUCCEEDED: it can no longer be paid; FAILED with
        failure_code `already_paid`: the consumer paid first."""

    @abstractmethod
    def refund(self, attempt_id: str, refund_id: str, amount_minor: int, currency: str,
               credentials: ChannelCredentials) -> ChannelResult:
        """Refund part or all of what was captured; `refund_id` is the channel's out_refund_no
        and sending it again must not refund twice. Amount: the refund's."""

    @abstractmethod
    def query_refund(self, attempt_id: str, refund_id: str, credentials: ChannelCredentials) -> ChannelResult:
        """The refund's state at the channel. Amount: the refund's."""

    @abstractmethod
    def parse_notification(self, headers: Mapping[str, str], body: bytes,
                           credentials: ChannelCredentials) -> ChannelUpdate:
        """Verify (signature, decryption) and parse one notification. Raise NotificationRejected
        for a forged or malformed one. `headers` have lower-case names."""

    @abstractmethod
    def notification_reply(self, accepted: bool) -> HttpReply:
        """What to answer the channel: its success reply, or the failure reply that makes it
        send the notification again."""

    @abstractmethod
    def fetch_statement(self, day: date, credentials: ChannelCredentials) -> bytes:
        """The channel's statement (bill) file for one day, in the channel's own format."""


class AuthenticationCapable(ABC):
    """Optional, for channels that authenticate the consumer themselves with a one-time code they
    send (a 3-D Secure-like OTP next action) and take that code through payhub, e.g. from the hosted
    cashier. An adapter opts in by also subclassing this; the router refuses codes for the others."""

    @abstractmethod
    def authenticate(self, attempt_id: str, code: str, credentials: ChannelCredentials) -> ChannelResult:
        """Pass the code on; the answer is the attempt's outcome (a wrong code may fail it). Passing
        the code that completed the attempt again answers the same outcome."""


class PayoutCapable(ABC):
    """Optional, for channels that can send money to a bank account (the sandbox; the bank channel).
    An adapter opts in by also subclassing this; adapters that do not are untouched, and the router
    answers FAILED `payouts_not_supported` for them. Outcomes as for payments: SUCCEEDED (sent and
    confirmed), FAILED (definitely not sent: the money stays with payhub), PENDING or UNKNOWN (query
    later with the same instruction)."""

    @abstractmethod
    def payout(self, instruction: PayoutInstruction, credentials: ChannelCredentials) -> ChannelResult:
        """Send the payout; sending the same payout_id again must not pay twice."""

    @abstractmethod
    def query_payout(self, instruction: PayoutInstruction, credentials: ChannelCredentials) -> ChannelResult:
        """The payout's state at the channel."""
