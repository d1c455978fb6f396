"""An in-memory CashierClient for the page's unit tests: one session whose state the test drives."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from payhub.cashier.domain import (
    Branding,
    CheckoutSession,
    MethodOption,
    OtpStep,
    PaymentResult,
    QrCodeStep,
    SessionState,
    SessionVersion,
    StepResult,
    Submission,
)
from payhub.kernel import clock
from payhub.kernel.errors import FailedPrecondition, InvalidArgument, NotFound

SESSION_ID = "cs_" + "A" * 32
DECLINED = "4000000000000002"
WRONG_CODE = "000000"


def new_session(**changes: object) -> CheckoutSession:
    now = clock.now()
    session = CheckoutSession(
        id=SESSION_ID, merchant_id="m1", payment_id="p1", client_type="PC", return_url="https://shop.example/done",
        locale="en", customer_id="", state=SessionState.OPEN, amount_minor=123456, currency="CNY",
        subject="Oolong tea <b>x2</b>", expire_time=now + timedelta(minutes=15), create_time=now, update_time=now,
        branding=Branding(display_name="Tea House", theme_color="#aa3300", frame_ancestors=("https://shop.example",)))
    return replace(session, **changes)  # type: ignore[arg-type]


class FakeCashier:
    def __init__(self, session: CheckoutSession | None = None) -> None:
        self.session = session or new_session()
        self.submissions: list[tuple[Submission, str]] = []
        self.codes: list[str] = []

    def _get(self, sid: str) -> CheckoutSession:
        if sid != self.session.id:
            raise NotFound("no such session")
        if not self.session.ended and self.session.expire_time <= clock.now():
            self.set(state=SessionState.EXPIRED, next_step=None)
        return self.session

    def set(self, **changes: object) -> None:
        self.session = replace(self.session, version=self.session.version + 1, **changes)  # type: ignore[arg-type]

    def get_session(self, session: str) -> CheckoutSession:
        return self._get(session)

    def session_version(self, session: str) -> SessionVersion:
        s = self._get(session)
        return SessionVersion(s.state, s.version, s.expire_time)

    def list_methods(self, session: str, user_agent: str = "") -> list[MethodOption]:
        self._get(session)
        return [MethodOption("CARD", "Bank card", "CARD_FORM", recommended=True, recommendation_reason="LAST_USED",
                             recommendation_text="Used last time"),
                MethodOption("ALIPAY", "Alipay", "QR_CODE")]

    def submit_method(self, session: str, submission: Submission, request_id: str) -> StepResult:
        s = self._get(session)
        self.submissions.append((submission, request_id))
        if s.ended:
            raise FailedPrecondition(f"the session is {s.state}", metadata={"state": s.state.value})
        if submission.method == "ALIPAY":
            self.set(state=SessionState.AWAITING_ACTION, selected_method="ALIPAY",
                     next_step=QrCodeStep("https://qr.alipay.com/fake123"))
        elif submission.card is None or len(submission.card.number) < 12:
            raise InvalidArgument.field("card.number", "must be 12-19 digits and pass the Luhn check")
        elif submission.card.number == DECLINED:
            failure = PaymentResult("FAILED", "card_declined", "The card was declined.", can_retry=True)
            self.set(state=SessionState.OPEN, selected_method="CARD", last_failure=failure, next_step=None)
            return StepResult(self.session, failure)
        else:
            self.set(state=SessionState.SUCCEEDED, selected_method="CARD",
                     next_step=PaymentResult("SUCCEEDED", return_url=s.return_url))
        assert self.session.next_step is not None
        return StepResult(self.session, self.session.next_step)

    def verify_challenge(self, session: str, code: str, request_id: str) -> StepResult:
        s = self._get(session)
        self.codes.append(code)
        if not isinstance(s.next_step, OtpStep):
            raise FailedPrecondition("no challenge is pending", metadata={"state": s.state.value})
        if code == WRONG_CODE:  # the answer says so; the stored step may lag behind (as a re-sync can)
            return StepResult(s, replace(s.next_step, attempts_remaining=4, previous_code_incorrect=True))
        self.set(state=SessionState.SUCCEEDED, next_step=PaymentResult("SUCCEEDED", return_url=s.return_url))
        assert self.session.next_step is not None
        return StepResult(self.session, self.session.next_step)
