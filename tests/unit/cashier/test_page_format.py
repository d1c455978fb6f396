"""Amounts, languages and countdowns as the hosted page shows them; both languages have every text."""

from __future__ import annotations

from payhub.cashier.page_csrf import CsrfTokens
from payhub.cashier.page_format import choose_locale, format_amount, format_number, format_seconds
from payhub.cashier.page_text import TEXTS
from payhub.kernel.crypto import KeyRing


def test_minor_units_are_shown_by_the_currencys_exponent() -> None:
    assert format_amount("CNY", 123456) == ("¥", "1,234.56")
    assert format_amount("CNY", 5) == ("¥", "0.05")
    assert format_amount("JPY", 1234) == ("¥", "1,234")
    assert format_number("KWD", 1234) == "1.234"
    assert format_amount("USD", 100000000) == ("$", "1,000,000.00")


def test_the_sessions_locale_wins_then_the_browsers() -> None:
    assert choose_locale("en", "zh-CN,zh;q=0.9") == "en"
    assert choose_locale("", "en-US,en;q=0.9") == "en"
    assert choose_locale("", "de;q=1, en;q=0.2, zh;q=0.8") == "zh-CN"
    assert choose_locale("", "fr") == "zh-CN"
    assert choose_locale("", "en;q=0") == "zh-CN"


def test_countdown_text() -> None:
    assert format_seconds(899) == "14:59" and format_seconds(3725) == "1:02:05" and format_seconds(-3) == "0:00"


def test_both_languages_have_the_same_texts() -> None:
    assert set(TEXTS["zh-CN"]) == set(TEXTS["en"])
    assert all(TEXTS["zh-CN"].values()) and all(TEXTS["en"].values())


def test_csrf_tokens_are_bound_to_their_session() -> None:
    tokens = CsrfTokens(KeyRing.parse("k1:" + "A" * 43 + "="))
    token = tokens.issue("cs_one")
    assert tokens.check("cs_one", token, token)
    assert not tokens.check("cs_two", token, token)
    assert not tokens.check("cs_one", token, tokens.issue("cs_one"))
    assert not tokens.check("cs_one", "", "")
