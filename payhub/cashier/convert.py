"""Protobuf <-> cashier domain, for the servicer."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from payhub.cashier.v1 import cashier_pb2 as pb

from payhub.cashier.domain import (
    CHANNEL_CHALLENGE,
    CardEntry,
    CashierSettings,
    CheckoutSession,
    Consumer,
    MethodOption,
    OtpStep,
    PaymentResult,
    QrCodeStep,
    RedirectStep,
    SdkStep,
    Step,
    Submission,
    WaitStep,
)
from payhub.cashier.sessions import SessionDraft
from payhub.kernel.errors import InvalidArgument
from payhub.kernel.protobuf import (
    client_type_name,
    client_type_value,
    from_timestamp,
    method_name,
    method_value,
    money,
    timestamp,
)


def draft_from(s: pb.CheckoutSession) -> SessionDraft:
    return SessionDraft(payment=s.payment, client_type=client_type_name(s.client_type), return_url=s.return_url,
                        locale=s.locale, customer_id=s.customer_id,
                        expire_time=from_timestamp(s.expire_time) if s.HasField("expire_time") else None)


def session_to(s: CheckoutSession, hosted_url: str, *, show_customer: bool) -> pb.CheckoutSession:
    out = pb.CheckoutSession(
        name=s.name, payment=s.payment_name, client_type=client_type_value(s.client_type), return_url=s.return_url,
        locale=s.locale, customer_id=s.customer_id if show_customer else "", expire_time=timestamp(s.expire_time),
        state=pb.CheckoutSessionState.Value(f"CHECKOUT_SESSION_STATE_{s.state.value}"), hosted_url=hosted_url,
        merchant=f"merchants/{s.merchant_id}", merchant_display_name=s.branding.display_name,
        amount=money(s.amount_minor, s.currency), subject=s.subject,
        selected_payment_method=method_value(s.selected_method),
        create_time=timestamp(s.create_time), update_time=timestamp(s.update_time))
    if s.next_step is not None:
        out.next_step.CopyFrom(step_to(s.next_step))
    if s.last_failure is not None:
        out.last_failure.CopyFrom(result_to(s.last_failure))
    if s.end_time is not None:
        out.end_time.CopyFrom(timestamp(s.end_time))
    return out


def result_to(r: PaymentResult) -> pb.PaymentResult:
    return pb.PaymentResult(status=pb.PaymentResultStatus.Value(f"PAYMENT_RESULT_STATUS_{r.status}"),
                            failure_code=r.failure_code, failure_message=r.failure_message, can_retry=r.can_retry,
                            return_url=r.return_url)


def step_to(step: Step) -> pb.NextStep:
    if isinstance(step, QrCodeStep):
        return pb.NextStep(qr_code=pb.DisplayQrCode(content=step.content, expire_time=timestamp(step.expire_time)))
    if isinstance(step, RedirectStep):
        return pb.NextStep(redirect=pb.Redirect(url=step.url, form_fields=step.form_fields,
                                                method=pb.REDIRECT_METHOD_POST if step.method == "POST"
                                                else pb.REDIRECT_METHOD_GET))
    if isinstance(step, SdkStep):
        return pb.NextStep(sdk_parameters=pb.SdkParameters(channel=step.channel, parameters=step.parameters))
    if isinstance(step, OtpStep):
        return pb.NextStep(otp_challenge=pb.OtpChallenge(
            challenge=step.challenge, masked_destination=step.masked_destination,
            attempts_remaining=step.attempts_remaining, expire_time=timestamp(step.expire_time),
            previous_code_incorrect=step.previous_code_incorrect,
            kind=pb.OTP_CHALLENGE_KIND_CHANNEL if step.challenge_kind == CHANNEL_CHALLENGE
            else pb.OTP_CHALLENGE_KIND_RISK))
    if isinstance(step, WaitStep):
        return pb.NextStep(wait=pb.WaitForResult(poll_interval=Duration(seconds=int(step.poll_interval_seconds))))
    return pb.NextStep(result=result_to(step))


def option_to(o: MethodOption) -> pb.PaymentMethodOption:
    return pb.PaymentMethodOption(
        payment_method=method_value(o.method), display_name=o.display_name, icon_url=o.icon_url,
        recommended=o.recommended, recommendation_text=o.recommendation_text,
        recommendation_reason=pb.RecommendationReason.Value(f"RECOMMENDATION_REASON_{o.recommendation_reason}")
        if o.recommendation_reason else pb.RECOMMENDATION_REASON_UNSPECIFIED,
        installment_counts=list(o.installment_counts))


def submission_from(r: pb.SubmitPaymentMethodRequest) -> Submission:
    card = None
    if r.HasField("card"):
        c = r.card
        card = CardEntry(number=c.number, expiry_month=c.expiry_month, expiry_year=c.expiry_year,
                         security_code=c.security_code, holder_name=c.holder_name)
    c2 = r.consumer
    return Submission(method=method_name(r.payment_method), card=card, card_token=r.card_token,
                      installment_count=r.installment_count, channel_user_id=r.channel_user_id,
                      consumer=Consumer(c2.ip_address, c2.user_agent, c2.device_id, c2.email, c2.phone))


def settings_to(s: CashierSettings) -> pb.CashierSettings:
    out = pb.CashierSettings(
        name=s.name, method_order=[method_value(m) for m in s.method_order],
        hidden_methods=[method_value(m) for m in s.hidden_methods], display_name=s.display_name,
        logo_url=s.logo_url, theme_color=s.theme_color, recommendation_disabled=s.recommendation_disabled,
        default_locale=s.default_locale, frame_ancestors=list(s.frame_ancestors))
    if s.session_ttl is not None:
        out.session_ttl.CopyFrom(Duration(seconds=int(s.session_ttl.total_seconds())))
    if s.update_time is not None:
        out.update_time.CopyFrom(timestamp(s.update_time))
    return out


def settings_from(s: pb.CashierSettings, merchant_id: str) -> CashierSettings:
    return CashierSettings(
        merchant_id=merchant_id, method_order=tuple(_method(v, "method_order", i) for i, v in
                                                    enumerate(s.method_order)),
        hidden_methods=tuple(_method(v, "hidden_methods", i) for i, v in enumerate(s.hidden_methods)),
        display_name=s.display_name, logo_url=s.logo_url, theme_color=s.theme_color,
        recommendation_disabled=s.recommendation_disabled,
        session_ttl=timedelta(seconds=s.session_ttl.seconds) if s.HasField("session_ttl") else None,
        default_locale=s.default_locale, frame_ancestors=tuple(s.frame_ancestors))


def _method(value: Any, field: str, index: int) -> str:
    name = method_name(value)
    if not name or name.startswith("UNKNOWN"):
        raise InvalidArgument.field(f"cashier_settings.{field}[{index}]", "must be a payment method")
    return name


def settings_merchant(name: str, field: str) -> str:
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "merchants" or parts[2] != "cashierSettings" or not parts[1]:
        raise InvalidArgument.field(field, "is required: `merchants/{merchant}/cashierSettings`")
    return parts[1]
