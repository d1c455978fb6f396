"""Statement formats as the channels' simulators write them, read back into lines: exact amounts in
minor units, refunds keyed by their refund number, the summary rows checked against the detail."""

from __future__ import annotations

import gzip
import io
from datetime import UTC, date, datetime

import pytest

from payhub.channel.alipay.bill import PAYMENT, REFUND, BillEntry, detail_csv, write_bill
from payhub.channel.wechatpay.sim_bill import render_trade_bill
from payhub.channel.wechatpay.sim_book import Refund, Trade
from payhub.settlement.reconciliation.lines import StatementMalformed, minor_units
from payhub.settlement.reconciliation.parsing import ALIPAY, UNIONPAY, WECHATPAY, open_statement
from payhub.settlement.reconciliation.staging import Staged, summary_check

PAID = datetime(2026, 11, 20, 1, 2, 3, tzinfo=UTC)


def read(fmt: str, content: bytes) -> tuple[list[tuple[object, ...]], bool, str]:
    parsed = open_statement(fmt, io.BytesIO(content))
    lines = list(parsed)
    staged = Staged()
    for line in lines:
        staged.add(line)
    ok, detail = summary_check(staged, parsed.summary)
    return [(x.kind, x.order_no, x.amount_minor, x.fee_minor, x.status) for x in lines], ok, detail


def test_decimal_amounts_are_exact_minor_units() -> None:
    assert [minor_units(t, 1, "x") for t in ("0.1", "12.30", "-0.01", "0.06000", "100000000.00")] == [
        10, 1230, -1, 6, 10_000_000_000]
    for bad in ("1.005", "1e3", "", "1,00", "0.1.2"):
        with pytest.raises(StatementMalformed, match="line 7"):
            minor_units(bad, 7, "x")


def wechat_bill() -> bytes:
    trade = Trade("190001", "wxapp", "att_1", "NATIVE", "Tea", 1001, "CNY", "https://n", "", "fp", PAID,
                  state="SUCCESS", transaction_id="4200001", success_time=PAID, openid="o")
    refund = Refund("190001", "ref_1", "5000001", trade, 500, "CNY", "https://n", PAID, "SUCCESS", PAID)
    return render_trade_bill([trade], [refund], PAID)


def test_the_wechatpay_simulators_bill_reads_back_plain_or_gzip() -> None:
    want = [("PAYMENT", "att_1", 1001, 6, "SUCCESS"), ("REFUND", "ref_1", 500, -3, "SUCCESS")]
    assert read(WECHATPAY, wechat_bill()) == (want, True, "")
    assert read(WECHATPAY, gzip.compress(wechat_bill())) == (want, True, "")


def test_a_wechatpay_summary_that_disagrees_with_its_rows_is_reported() -> None:
    text = wechat_bill().decode().replace("`10.01,`5.00", "`10.02,`5.00")
    _, ok, detail = read(WECHATPAY, text.encode())
    assert not ok and "payment amount: summary 1002, detail 1001" in detail


def test_a_malformed_wechatpay_row_names_its_line() -> None:
    text = wechat_bill().decode().replace("`0.60%,`10.01", "`0.60%,`ten", 1)  # 订单金额 of line 2
    with pytest.raises(StatementMalformed, match="line 2"):
        read(WECHATPAY, text.encode())


def alipay_bill() -> bytes:
    entries = [BillEntry("2026112022001", "att_2", PAYMENT, "Tea", PAID, PAID, "b***@x.com", 2000, 2000,
                         fee_fen=12),
               BillEntry("2026112022001", "att_2", REFUND, "Tea", PAID, PAID, "b***@x.com", -750, -750, "ref_2")]
    return write_bill("2088000000000001", date(2026, 11, 20), entries, PAID)


def test_the_alipay_bill_zip_of_gbk_csvs_and_its_bare_detail_file_read_back() -> None:
    want = [("PAYMENT", "att_2", 2000, 12, "SUCCESS"), ("REFUND", "ref_2", 750, 0, "SUCCESS")]
    assert read(ALIPAY, alipay_bill()) == (want, True, "")
    lines, ok, _ = read(ALIPAY, detail_csv(alipay_bill()))  # what the adapter hands over: the 业务明细 CSV
    assert lines == want and ok


def test_unionpays_file_reads_back() -> None:
    content = b"queryId|orderId|txnType|txnTime|txnAmt|currencyCode|origQryId\n" \
              b"Q1|att01ABC|01|20261120090000|1234|156|\nQ2|ref01XYZ|04|20261120100000|234|156|Q1\n"
    lines, _, _ = read(UNIONPAY, content)
    assert lines == [("PAYMENT", "att01ABC", 1234, None, "SUCCESS"), ("REFUND", "ref01XYZ", 234, None, "SUCCESS")]
    with pytest.raises(StatementMalformed, match="line 1"):
        read(UNIONPAY, b"not a file\n")
