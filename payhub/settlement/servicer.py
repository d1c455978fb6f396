"""SettlementService over gRPC: protobuf in, a use case, protobuf out."""

from __future__ import annotations

import grpc
from payhub.settlement.v1 import settlement_pb2 as pb
from payhub.settlement.v1 import settlement_pb2_grpc

from payhub.kernel.errors import Violations
from payhub.settlement import convert as cv
from payhub.settlement import split_convert as scv
from payhub.settlement.base import not_found, parse_name
from payhub.settlement.reconciliation import convert as rc
from payhub.settlement.service import SettlementService
from payhub.settlement.settling import parse_date

Ctx = grpc.ServicerContext


class SettlementServicer(settlement_pb2_grpc.SettlementServiceServicer):
    def __init__(self, service: SettlementService) -> None:
        self._s = service

    # -- ledger -------------------------------------------------------------------------------------
    def GetBalance(self, request: pb.GetBalanceRequest, context: Ctx) -> pb.GetBalanceResponse:
        name, balances, as_of = self._s.get_balance(request.name, request.currency_code)
        return pb.GetBalanceResponse(balance=cv.balance_to(name, balances, as_of))

    def ListLedgerAccounts(self, request: pb.ListLedgerAccountsRequest, context: Ctx) -> pb.ListLedgerAccountsResponse:
        rows, token = self._s.list_ledger_accounts(request.page_size, request.page_token, request.owner,
                                                   cv.kind_name(request.kind), request.currency_code, request.channel)
        return pb.ListLedgerAccountsResponse(ledger_accounts=[cv.account_to(a) for a in rows], next_page_token=token)

    def ListLedgerEntries(self, request: pb.ListLedgerEntriesRequest, context: Ctx) -> pb.ListLedgerEntriesResponse:
        rows, token = self._s.list_ledger_entries(
            request.parent, request.page_size, request.page_token, cv.optional_time(request, "start_time"),
            cv.optional_time(request, "end_time"), cv.journal_kind_name(request.journal_kind))
        return pb.ListLedgerEntriesResponse(ledger_entries=[cv.entry_to(e) for e in rows], next_page_token=token)

    def GetJournal(self, request: pb.GetJournalRequest, context: Ctx) -> pb.GetJournalResponse:
        return pb.GetJournalResponse(journal=cv.journal_to(self._s.get_journal(request.name)))

    def AuditLedger(self, request: pb.AuditLedgerRequest, context: Ctx) -> pb.AuditLedgerResponse:
        report = self._s.audit_ledger(cv.optional_time(request, "start_time"), cv.optional_time(request, "end_time"))
        return cv.audit_to(report, request.max_findings)

    # -- settlement and payouts -----------------------------------------------------------------------
    def RunSettlement(self, request: pb.RunSettlementRequest, context: Ctx) -> pb.RunSettlementResponse:
        result = self._s.run_settlement(request.settlement_date, request.merchant, request.request_id)
        return pb.RunSettlementResponse(settlement_date=result.settlement_date, settlement_batches=result.batches,
                                        created_batch_count=result.created, payouts=result.payouts)

    def ListSettlementBatches(self, request: pb.ListSettlementBatchesRequest,
                              context: Ctx) -> pb.ListSettlementBatchesResponse:
        rows, token = self._s.list_settlement_batches(request.parent, request.page_size, request.page_token,
                                                      request.start_date, request.end_date, request.currency_code)
        owner = self._s.party_owner
        return pb.ListSettlementBatchesResponse(settlement_batches=[cv.batch_to(b, owner(b.merchant_id)) for b in rows],
                                                next_page_token=token)

    def GetSettlementBatch(self, request: pb.GetSettlementBatchRequest, context: Ctx) -> pb.GetSettlementBatchResponse:
        batch = self._s.get_settlement_batch(request.name)
        owner = self._s.party_owner(batch.merchant_id)
        return pb.GetSettlementBatchResponse(settlement_batch=cv.batch_to(batch, owner))

    def ListSettlementItems(self, request: pb.ListSettlementItemsRequest,
                            context: Ctx) -> pb.ListSettlementItemsResponse:
        rows, token = self._s.list_settlement_items(request.parent, request.page_size, request.page_token)
        return pb.ListSettlementItemsResponse(settlement_items=[cv.item_to(request.parent, i) for i in rows],
                                              next_page_token=token)

    def CreatePayout(self, request: pb.CreatePayoutRequest, context: Ctx) -> pb.CreatePayoutResponse:
        party = self._s.parse_party(request.parent, "parent")  # a merchant or one of its split receivers
        if party is None:
            raise not_found(request.parent)
        amount = request.payout.amount
        payout = self._s.create_payout(party, amount.amount_minor, amount.currency_code,
                                       request.payout.description, request.request_id)
        return pb.CreatePayoutResponse(payout=cv.payout_to(payout, self._s.party_owner(party)))

    def ListPayouts(self, request: pb.ListPayoutsRequest, context: Ctx) -> pb.ListPayoutsResponse:
        rows, token = self._s.list_payouts(request.parent, request.page_size, request.page_token,
                                           cv.payout_state_name(request.state), cv.optional_time(request, "start_time"),
                                           cv.optional_time(request, "end_time"))
        owner = self._s.party_owner
        return pb.ListPayoutsResponse(payouts=[cv.payout_to(p, owner(p.merchant_id)) for p in rows],
                                      next_page_token=token)

    # -- wallets -------------------------------------------------------------------------------------
    def CreateWallet(self, request: pb.CreateWalletRequest, context: Ctx) -> pb.CreateWalletResponse:
        (merchant_id,) = parse_name(request.parent, "parent", "merchants")
        wallet = self._s.create_wallet(merchant_id, request.wallet.customer_id, request.wallet.currency_code,
                                       request.request_id)
        return pb.CreateWalletResponse(wallet=cv.wallet_to(wallet))

    def GetWallet(self, request: pb.GetWalletRequest, context: Ctx) -> pb.GetWalletResponse:
        return pb.GetWalletResponse(wallet=cv.wallet_to(self._s.get_wallet(request.name)))

    def ListWallets(self, request: pb.ListWalletsRequest, context: Ctx) -> pb.ListWalletsResponse:
        rows, token = self._s.list_wallets(request.parent, request.page_size, request.page_token, request.customer_id)
        return pb.ListWalletsResponse(wallets=[cv.wallet_to(w) for w in rows], next_page_token=token)

    def TopUpWallet(self, request: pb.TopUpWalletRequest, context: Ctx) -> pb.TopUpWalletResponse:
        payment, wallet = self._s.top_up_wallet(request.wallet, request.amount.amount_minor,
                                                request.amount.currency_code, request.request_id)
        return pb.TopUpWalletResponse(payment=payment, wallet=cv.wallet_to(wallet))

    # -- the wallet channel's money movements (internal: the wallet adapter of another process) -------
    def ChargeWallet(self, request: pb.ChargeWalletRequest, context: Ctx) -> pb.ChargeWalletResponse:
        result = self._s.wallet_charge(request.merchant, request.customer_id, request.payment_id,
                                       request.attempt_id, request.amount.amount_minor,
                                       request.amount.currency_code)
        return pb.ChargeWalletResponse(result=cv.wallet_result_to(result))

    def QueryWalletOperation(self, request: pb.QueryWalletOperationRequest,
                             context: Ctx) -> pb.QueryWalletOperationResponse:
        result = self._s.wallet_query(request.merchant, request.charge_id, request.amount.amount_minor,
                                      request.amount.currency_code)
        return pb.QueryWalletOperationResponse(result=cv.wallet_result_to(result))

    def RefundWallet(self, request: pb.RefundWalletRequest, context: Ctx) -> pb.RefundWalletResponse:
        result = self._s.wallet_refund(request.merchant, request.attempt_id, request.refund_id,
                                       request.amount.amount_minor, request.amount.currency_code)
        return pb.RefundWalletResponse(result=cv.wallet_result_to(result))

    def GetWalletStatement(self, request: pb.GetWalletStatementRequest,
                           context: Ctx) -> pb.GetWalletStatementResponse:
        v = Violations()
        day = parse_date(v, "day", request.day)
        v.raise_if_any()
        assert day is not None
        return pb.GetWalletStatementResponse(content=self._s.wallet_statement(request.merchant, day))

    # -- profit split (issue #14) ---------------------------------------------------------------------
    def SplitPayment(self, request: pb.SplitPaymentRequest, context: Ctx) -> pb.SplitPaymentResponse:
        split = self._s.split_payment(request.payment, scv.instruction_from(request.instruction), request.request_id)
        return pb.SplitPaymentResponse(split=scv.split_to(split))

    def ListSplits(self, request: pb.ListSplitsRequest, context: Ctx) -> pb.ListSplitsResponse:
        rows, token = self._s.list_splits(request.parent, request.page_size, request.page_token, request.payment,
                                          request.receiver, cv.optional_time(request, "start_time"),
                                          cv.optional_time(request, "end_time"))
        return pb.ListSplitsResponse(splits=[scv.split_to(s) for s in rows], next_page_token=token)

    def CreateSplitReceiver(self, request: pb.CreateSplitReceiverRequest,
                            context: Ctx) -> pb.CreateSplitReceiverResponse:
        receiver = self._s.create_split_receiver(request.parent, scv.receiver_input_from(request.split_receiver),
                                                 request.request_id)
        return pb.CreateSplitReceiverResponse(split_receiver=scv.receiver_to(receiver))

    def ListSplitReceivers(self, request: pb.ListSplitReceiversRequest, context: Ctx) -> pb.ListSplitReceiversResponse:
        rows, token = self._s.list_split_receivers(request.parent, request.page_size, request.page_token)
        return pb.ListSplitReceiversResponse(split_receivers=[scv.receiver_to(r) for r in rows], next_page_token=token)

    # -- reconciliation (对账) ----------------------------------------------------------------------
    def ImportStatement(self, request: pb.ImportStatementRequest, context: Ctx) -> pb.ImportStatementResponse:
        row = self._s.import_statement(request.channel, request.channel_account, request.statement_date,
                                       rc.format_name(request.format), request.content, request.merchant,
                                       request.request_id)
        return pb.ImportStatementResponse(statement=rc.statement_to(row))

    def GetStatement(self, request: pb.GetStatementRequest, context: Ctx) -> pb.GetStatementResponse:
        return pb.GetStatementResponse(statement=rc.statement_to(self._s.get_statement(request.name)))

    def ListStatements(self, request: pb.ListStatementsRequest, context: Ctx) -> pb.ListStatementsResponse:
        rows, token = self._s.list_statements(request.page_size, request.page_token, request.channel,
                                              request.start_date, request.end_date,
                                              rc.statement_state_name(request.state))
        return pb.ListStatementsResponse(statements=[rc.statement_to(r) for r in rows], next_page_token=token)

    def ListDiscrepancies(self, request: pb.ListDiscrepanciesRequest, context: Ctx) -> pb.ListDiscrepanciesResponse:
        rows, token = self._s.list_discrepancies(
            request.page_size, request.page_token, rc.discrepancy_state_name(request.state),
            rc.discrepancy_kind_name(request.kind), request.channel, request.start_date, request.end_date,
            request.merchant, request.statement)
        return pb.ListDiscrepanciesResponse(discrepancies=[rc.discrepancy_to(d) for d in rows],
                                            next_page_token=token)

    def ResolveDiscrepancy(self, request: pb.ResolveDiscrepancyRequest,
                           context: Ctx) -> pb.ResolveDiscrepancyResponse:
        d = self._s.resolve_discrepancy(request.name, rc.action_name(request.action), request.reason,
                                        request.request_id)
        return pb.ResolveDiscrepancyResponse(discrepancy=rc.discrepancy_to(d))
