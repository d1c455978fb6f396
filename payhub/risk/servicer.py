"""RiskService over gRPC: protobuf in, a use case, protobuf out."""

from __future__ import annotations

from typing import Any

from payhub.risk.v1 import risk_pb2 as pb
from payhub.risk.v1 import risk_pb2_grpc

from payhub.kernel.errors import InvalidArgument
from payhub.kernel.protobuf import from_timestamp, method_name
from payhub.risk import convert as cv
from payhub.risk.domain import Action, TxKind
from payhub.risk.service import RiskService


class RiskServicer(risk_pb2_grpc.RiskServiceServicer):
    def __init__(self, service: RiskService) -> None:
        self._risk = service

    def EvaluateTransaction(self, request: pb.EvaluateTransactionRequest,
                            context: Any) -> pb.EvaluateTransactionResponse:
        decision = self._risk.evaluate(cv.context_from(request.context), request.dry_run, request.request_id)
        return pb.EvaluateTransactionResponse(decision=cv.decision_to(decision))

    def CreateRule(self, request: pb.CreateRuleRequest, context: Any) -> pb.CreateRuleResponse:
        rule = self._risk.create_rule(cv.rule_from(request.rule), cv.request_key(request))
        return pb.CreateRuleResponse(rule=cv.rule_to(rule))

    def GetRule(self, request: pb.GetRuleRequest, context: Any) -> pb.GetRuleResponse:
        return pb.GetRuleResponse(rule=cv.rule_to(self._risk.get_rule(cv.resource_id(request.name, "riskRules"))))

    def UpdateRule(self, request: pb.UpdateRuleRequest, context: Any) -> pb.UpdateRuleResponse:
        paths = list(request.update_mask.paths)
        if "action" in paths and request.rule.action == 0:
            raise InvalidArgument.field("rule.action", "is required when the update_mask names it")
        rule = self._risk.update_rule(cv.resource_id(request.rule.name, "riskRules", "rule.name"),
                                      cv.rule_from(request.rule, need_condition=False), paths,
                                      cv.request_key(request))
        return pb.UpdateRuleResponse(rule=cv.rule_to(rule))

    def ListRules(self, request: pb.ListRulesRequest, context: Any) -> pb.ListRulesResponse:
        method = method_name(request.payment_method)
        page = self._risk.list_rules(request.page_size, request.page_token,
                                     cv.merchant_id(request.merchant, "merchant"), cv.rule_kind_name(request.kind),
                                     method)
        return pb.ListRulesResponse(rules=[cv.rule_to(r) for r in page.items], next_page_token=page.next_page_token)

    def AddBlocklistEntry(self, request: pb.AddBlocklistEntryRequest, context: Any) -> pb.AddBlocklistEntryResponse:
        entry = self._risk.add_block(cv.block_from(request.entry), cv.request_key(request))
        return pb.AddBlocklistEntryResponse(entry=cv.block_to(entry))

    def RemoveBlocklistEntry(self, request: pb.RemoveBlocklistEntryRequest,
                             context: Any) -> pb.RemoveBlocklistEntryResponse:
        entry = self._risk.remove_block(cv.resource_id(request.name, "blocklistEntries"), request.reason,
                                        cv.request_key(request))
        return pb.RemoveBlocklistEntryResponse(entry=cv.block_to(entry))

    def ListBlocklistEntries(self, request: pb.ListBlocklistEntriesRequest,
                             context: Any) -> pb.ListBlocklistEntriesResponse:
        page = self._risk.list_blocks(request.page_size, request.page_token, cv.block_kind_name(request.kind),
                                      request.value, cv.merchant_id(request.merchant, "merchant"),
                                      request.include_expired)
        return pb.ListBlocklistEntriesResponse(entries=[cv.block_to(e) for e in page.items],
                                               next_page_token=page.next_page_token)

    def ListRiskEvents(self, request: pb.ListRiskEventsRequest, context: Any) -> pb.ListRiskEventsResponse:
        try:
            action = Action(request.action) if request.action else None
            kind = TxKind(pb.TransactionKind.Name(request.transaction_kind).removeprefix("TRANSACTION_KIND_")) \
                if request.transaction_kind else None
        except ValueError:
            raise InvalidArgument.field("action", "is not a risk action or transaction kind") from None
        page = self._risk.list_events(
            request.page_size, request.page_token, action=action,
            rule_id=cv.resource_id(request.rule, "riskRules", "rule") if request.rule else "",
            merchant_id=cv.merchant_id(request.merchant, "merchant"),
            start=from_timestamp(request.start_time) if request.HasField("start_time") else None,
            end=from_timestamp(request.end_time) if request.HasField("end_time") else None,
            review_state=cv.review_state(request.review_state), transaction=request.transaction, kind=kind,
            include_dry_runs=request.include_dry_runs)
        return pb.ListRiskEventsResponse(risk_events=[cv.event_to(e) for e in page.items],
                                         next_page_token=page.next_page_token)

    def ReviewTransaction(self, request: pb.ReviewTransactionRequest, context: Any) -> pb.ReviewTransactionResponse:
        approve = {pb.REVIEW_VERDICT_APPROVE: True, pb.REVIEW_VERDICT_REJECT: False}.get(request.verdict)
        event = self._risk.review(cv.resource_id(request.name, "riskEvents"), approve, request.note,
                                  cv.request_key(request))
        return pb.ReviewTransactionResponse(risk_event=cv.event_to(event))

    def VerifyChallenge(self, request: pb.VerifyChallengeRequest, context: Any) -> pb.VerifyChallengeResponse:
        verified, challenge = self._risk.verify_challenge(cv.resource_id(request.name, "riskChallenges"),
                                                          request.code, cv.request_key(request))
        return pb.VerifyChallengeResponse(verified=verified, challenge=cv.challenge_to(challenge))

    def GetSandboxChallengeCode(self, request: pb.GetSandboxChallengeCodeRequest,
                                context: Any) -> pb.GetSandboxChallengeCodeResponse:
        return pb.GetSandboxChallengeCodeResponse(
            code=self._risk.sandbox_code(cv.resource_id(request.name, "riskChallenges")))
