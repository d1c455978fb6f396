"""The trade center's use cases. Each RPC is one transaction where possible; a channel is always
called OUTSIDE any database transaction, between a claim (compare-and-set) and the recording of the
result (a second compare-and-set).

Concurrency decisions (documented in the proto as well):
* ConfirmPayment: CREATED|FAILED -> PROCESSING with a new attempt is one CAS. Of concurrent
  confirmations exactly one calls the channel; a retry of that same confirmation (same request_id)
  gets the payment's current state, any other loser gets ABORTED `PAYMENT_BEING_CONFIRMED` (payment
  in flight) or FAILED_PRECONDITION `PAYMENT_NOT_CONFIRMABLE` (already paid/closed).
* Capture, void and channel-side close take the payment's single operation slot
  (`pending_operation`, a CAS with a lease) before calling the channel.
* Refunds reserve their amount on the payment with
  `amount_refunded = amount_refunded + x WHERE amount_refunded + x <= amount_captured` before the
  channel is called, and release it when the refund fails.
* Paid after close: a success for a closed payment, or for an attempt that is no longer the
  payment's live one, is recorded on the attempt and raises `payment.paid_after_close` with the
  policy applied. `auto_refund` (the default): an automatic refund of the whole attempt is queued
  (sent by the refund job); the payment stays CLOSED and its amounts are untouched. `reopen` (the
  merchant's setting, for a CLOSED payment only): the payment becomes SUCCEEDED with that attempt
  (CAS from CLOSED) and `payment.succeeded` follows. Money for a payment another attempt already
  paid is always refunded; a MANUAL-capture authorisation arriving late is voided at the channel.
"""

from __future__ import annotations

from payhub.trade.confirm import Confirmation, MethodInput
from payhub.trade.jobs import TradeJobs
from payhub.trade.payments import PaymentChanges, PaymentDraft, PaymentRecords
from payhub.trade.refunding import Refunding
from payhub.trade.risk_holds import RiskHolds

__all__ = ["MethodInput", "PaymentChanges", "PaymentDraft", "TradeService"]


class TradeService(PaymentRecords, RiskHolds, Confirmation, Refunding, TradeJobs):
    """The trade center: one class over the use-case modules (payments, confirm, operations, refunding,
    outcomes, jobs), each of which builds on base.TradeBase."""
