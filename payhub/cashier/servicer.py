"""CashierService over gRPC: protobuf in, a use case, protobuf out."""

from __future__ import annotations

from typing import Any

import grpc
from payhub.cashier.v1 import cashier_pb2 as pb
from payhub.cashier.v1 import cashier_pb2_grpc

from payhub.cashier import convert as cv
from payhub.cashier.domain import CheckoutSession
from payhub.cashier.service import CashierService
from payhub.identity.principal import PrincipalKind, current_principal
from payhub.kernel.errors import InvalidArgument
from payhub.kernel.pagination import next_token, parse_page


def _required(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument.field(field, "is required: `checkoutSessions/{session}`")
    return value


class CashierServicer(cashier_pb2_grpc.CashierServiceServicer):
    def __init__(self, service: CashierService) -> None:
        self._cashier = service

    def _session(self, s: CheckoutSession) -> pb.CheckoutSession:
        show = current_principal().kind is not PrincipalKind.ANONYMOUS
        return cv.session_to(s, self._cashier.hosted_url(s), show_customer=show)

    def CreateCheckoutSession(self, request: pb.CreateCheckoutSessionRequest,
                              context: Any) -> pb.CreateCheckoutSessionResponse:
        session = self._cashier.create_session(cv.draft_from(request.checkout_session), request.request_id)
        return pb.CreateCheckoutSessionResponse(checkout_session=self._session(session))

    def GetCheckoutSession(self, request: pb.GetCheckoutSessionRequest, context: Any) -> pb.GetCheckoutSessionResponse:
        session = self._cashier.get_session(_required(request.name, "name"))
        return pb.GetCheckoutSessionResponse(checkout_session=self._session(session))

    def ListPaymentMethods(self, request: pb.ListPaymentMethodsRequest, context: Any) -> pb.ListPaymentMethodsResponse:
        filters = [request.checkout_session, request.user_agent]
        page = parse_page(request.page_size, request.page_token, filters)
        if page.after is not None and not isinstance(page.after, int):
            raise InvalidArgument.field("page_token", "is not a token this API returned")
        options = self._cashier.list_methods(_required(request.checkout_session, "checkout_session"),
                                             request.user_agent)
        start = page.after + 1 if page.after is not None else 0
        rows = list(enumerate(options))[start:start + page.size + 1]
        return pb.ListPaymentMethodsResponse(payment_methods=[cv.option_to(o) for _, o in rows[:page.size]],
                                             next_page_token=next_token(rows, page, lambda r: r[0], filters))

    def SubmitPaymentMethod(self, request: pb.SubmitPaymentMethodRequest,
                            context: Any) -> pb.SubmitPaymentMethodResponse:
        result = self._cashier.submit(_required(request.checkout_session, "checkout_session"),
                                      cv.submission_from(request), request.request_id)
        return pb.SubmitPaymentMethodResponse(checkout_session=self._session(result.session),
                                              next_step=cv.step_to(result.step))

    def VerifyCheckoutChallenge(self, request: pb.VerifyCheckoutChallengeRequest,
                                context: Any) -> pb.VerifyCheckoutChallengeResponse:
        result = self._cashier.verify(_required(request.checkout_session, "checkout_session"), request.code,
                                      request.request_id)
        return pb.VerifyCheckoutChallengeResponse(checkout_session=self._session(result.session),
                                                  next_step=cv.step_to(result.step))

    def GetCashierSettings(self, request: pb.GetCashierSettingsRequest, context: Any) -> pb.GetCashierSettingsResponse:
        settings = self._cashier.get_settings(cv.settings_merchant(request.name, "name"))
        return pb.GetCashierSettingsResponse(cashier_settings=cv.settings_to(settings))

    def UpdateCashierSettings(self, request: pb.UpdateCashierSettingsRequest,
                              context: Any) -> pb.UpdateCashierSettingsResponse:
        merchant = cv.settings_merchant(request.cashier_settings.name, "cashier_settings.name")
        settings = self._cashier.update_settings(cv.settings_from(request.cashier_settings, merchant),
                                                 list(request.update_mask.paths), request.request_id)
        return pb.UpdateCashierSettingsResponse(cashier_settings=cv.settings_to(settings))


def add_to_server(servicer: CashierServicer, server: grpc.Server) -> None:
    cashier_pb2_grpc.add_CashierServiceServicer_to_server(servicer, server)
