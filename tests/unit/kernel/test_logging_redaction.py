import json

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from payhub.kernel.logging import _ISSUED_SECRET, _PAN, LazyText, configure_logging, redact_text


def test_card_numbers_keep_only_last_four() -> None:
    assert redact_text("card 4242424242424242 ok") == "card ****4242 ok"
    assert redact_text("4242 4242 4242 4242") == "****4242"


def test_issued_secrets_are_redacted() -> None:
    assert "abcdefghijk" not in redact_text("key phk_abcdefghijklmnop used")


def test_log_lines_never_carry_secrets_or_pans(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    structlog.get_logger("t").info("call", authorization="Bearer phs_supersecretvalue",
                                   credentials={"private_key": "-----BEGIN"},
                                   note="paid with 4000000000000002", nested={"cvc": "123"})
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["authorization"] == "[REDACTED]"
    assert line["credentials"] == "[REDACTED]"
    assert line["nested"] == {"cvc": "[REDACTED]"}
    assert "4000000000000002" not in json.dumps(line)


@pytest.mark.parametrize(("text", "expected"), [
    ("4000000000000002", "****0002"),            # the shortest run that still looks like a card: 13+ digits
    ("4000-0000-0000-0002 paid", "****0002 paid"),
    ("card 4111 1111 1111 1111", "card ****1111"),
    ("٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "****٤٢٤٢"),            # any script's digits, as the pattern always matched
    ("order 123456789012", "order 123456789012"),  # 12 digits: not a card number
    ("secret whsec_abcdefgh1", "secret whsec_[REDACTED]"),
    ("phs_12345678", "phs_[REDACTED]"),
    ("phk_short", "phk_short"),                    # too short to be an issued secret
    ("2026-11-25T06:37:31.123456Z", "2026-11-25T06:37:31.123456Z"),
    ("/payhub.trade.v1.TradeService/GetPayment", "/payhub.trade.v1.TradeService/GetPayment"),
    ("", ""),
])
def test_redaction_of_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.from_regex(r"[0-9]{1,16}", fullmatch=True),
                          st.from_regex(r"[\u0660-\u0669]{1,14}", fullmatch=True),  # Arabic-Indic digits
                          st.sampled_from([" ", "-", "--", "x", "_", "phk_", "whsec_", "abcdefgh"])),
                max_size=10).map("".join))
def test_the_cheap_pre_checks_never_let_a_card_number_or_secret_through(text: str) -> None:
    """Whatever the patterns themselves would redact is redacted (the pre-checks only skip text the
    patterns cannot match)."""
    expected = _PAN.sub(lambda m: "****" + m.group(1), text) if len(text) >= 12 else text
    if len(text) >= 12:
        expected = _ISSUED_SECRET.sub(lambda m: m.group(1) + "_[REDACTED]", expected)
    assert redact_text(text) == expected


def test_enum_values_and_other_str_subclasses_are_logged_as_plain_strings(
        capsys: pytest.CaptureFixture[str]) -> None:
    from enum import StrEnum

    class State(StrEnum):
        PAID = "PAID"

    assert type(redact_text(State.PAID)) is str
    configure_logging("info", "console")
    structlog.get_logger("t").info("call", state=State.PAID)
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.endswith("state=PAID")


def test_every_log_line_keeps_its_fields_and_redacts_by_key_at_any_depth(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    structlog.get_logger("t").info("rpc", code="OK", latency_ms=1.5, principal="merchant:key_1", api_key=12345,
                                   attempts=[{"card_number": "4242424242424242", "note": "4242424242424242"}],
                                   pair=("phk_abcdefghijkl", 7), nothing=None)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert list(line) == ["code", "latency_ms", "principal", "api_key", "attempts", "pair", "nothing", "event",
                          "level", "timestamp"]
    assert (line["event"], line["level"], line["code"], line["latency_ms"]) == ("rpc", "info", "OK", 1.5)
    assert line["api_key"] == "[REDACTED]"
    assert line["attempts"] == [{"card_number": "[REDACTED]", "note": "****4242"}]
    assert line["pair"] == ["phk_[REDACTED]", 7]
    assert line["nothing"] is None


def test_lazy_text_is_made_once_when_a_line_carries_it_and_is_redacted_like_text(
        capsys: pytest.CaptureFixture[str]) -> None:
    made: list[int] = []

    def make() -> str:
        made.append(1)
        return f"req_{len(made)} 4242424242424242"
    configure_logging("info", "json")
    lazy = LazyText(make)
    assert made == []
    log = structlog.get_logger("t")
    log.info("one", request_id=lazy)
    log.info("two", request_id=lazy, token=LazyText(make))
    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["request_id"] == second["request_id"] == "req_1 ****4242"
    assert second["token"] == "[REDACTED]"
    assert str(lazy) == "req_1 4242424242424242" and repr(lazy) == repr(str(lazy))
    assert made == [1]  # the redacted token was never made
