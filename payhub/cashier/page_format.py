"""What the hosted cashier page shows, as plain text: the amount in its currency, the language.

Pure functions (no I/O) so the page and its tests agree on every string.
"""

from __future__ import annotations

from payhub.kernel.money import CURRENCY_EXPONENTS

LOCALES = ("zh-CN", "en")
DEFAULT_LOCALE = "zh-CN"

# Symbols a consumer recognises; where one symbol serves several currencies the page also shows the
# ISO code next to the amount (see `format_amount`).
_SYMBOLS: dict[str, str] = {
    "CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "HKD": "HK$", "SGD": "S$", "AUD": "A$", "CAD": "C$",
    "CHF": "CHF ", "JPY": "¥", "KRW": "₩", "TWD": "NT$", "MOP": "MOP$", "THB": "฿", "MYR": "RM", "NZD": "NZ$",
    "KWD": "KD ", "BHD": "BD ",
}


def format_number(currency: str, amount_minor: int) -> str:
    """Minor units as the currency's decimal amount with thousands separators: CNY 123456 -> "1,234.56",
    JPY 1234 -> "1,234", KWD 1234 -> "1.234" (exponent 3)."""
    exponent = CURRENCY_EXPONENTS.get(currency, 2)
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**exponent)
    text = f"{whole:,}"
    if exponent:
        text += "." + str(fraction).rjust(exponent, "0")
    return sign + text


def format_amount(currency: str, amount_minor: int) -> tuple[str, str]:
    """(symbol, number): the page shows the symbol small before the number and the ISO code after it."""
    return _SYMBOLS.get(currency, currency + " "), format_number(currency, amount_minor)


def choose_locale(session_locale: str, accept_language: str) -> str:
    """The session's locale when it names one we have, else the browser's first supported language
    (Accept-Language, by q-value), else Chinese."""
    if session_locale in LOCALES:
        return session_locale
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        ranked.append((-quality, index, tag.strip().lower()))
    for negative_quality, _index, tag in sorted(ranked):
        if negative_quality >= 0:
            continue
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return DEFAULT_LOCALE


def format_seconds(seconds: int) -> str:
    """A countdown as M:SS, or H:MM:SS from an hour on."""
    seconds = max(0, seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
