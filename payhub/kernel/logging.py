"""Structured logs (structlog, JSON by default) with redaction of card numbers and secrets."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

# Keys whose values are never logged, whatever they hold.
_SECRET_KEYS = re.compile(r"(secret|token|password|passwd|credential|authorization|api_key|cvc|cvv|"
                          r"card_number|pan|private_key|signing_key)", re.IGNORECASE)
# 13-19 digit runs (optionally spaced or dashed) look like card numbers: keep only the last four.
_PAN = re.compile(r"\b(?:\d[ -]?){9,15}(\d{4})\b")
# Bearer secrets payhub issues carry a recognisable prefix.
_ISSUED_SECRET = re.compile(r"\b(phk|phs|whsec)_[A-Za-z0-9_\-]{8,}")

# Cheap exact pre-checks, so most values (codes, names, ids) skip the regular expressions: whatever
# _PAN matches is a run of at least 13 characters that are digits, spaces or dashes (13 digits at
# least, each followed by at most one separator); an issued secret needs 12 characters and its prefix.
# (Four digits in a row was the earlier, weaker pre-check: payhub's own ids and request ids often
# hold four, so most access-log lines ran the card regular expression twice.)
_MIN_SENSITIVE_LENGTH = 12
_PAN_RUN = 13
_PAN_CHARS = re.compile(rf"[\d -]{{{_PAN_RUN}}}")
# ASCII digit, space or dash -> "0", anything else -> "x"
_PAN_CHARS_TO_ZERO = bytes(0x30 if 0x30 <= i <= 0x39 or i in (0x20, 0x2D) else 0x78 for i in range(256))
_PAN_ZEROS = b"0" * _PAN_RUN
# Whether a key names a secret, by key (log keys are few and repeat on every line).
_SECRET_KEY_VERDICTS: dict[str, bool] = {}
_MAX_KEY_VERDICTS = 4096


def _may_hold_card_number(value: str) -> bool:
    if value.isascii():
        return _PAN_ZEROS in value.encode("ascii").translate(_PAN_CHARS_TO_ZERO)
    return _PAN_CHARS.search(value) is not None  # \d also matches other scripts' digits, as in _PAN


def redact_text(value: str) -> str:
    if len(value) >= _MIN_SENSITIVE_LENGTH:
        if _may_hold_card_number(value):
            value = _PAN.sub(lambda m: "****" + m.group(1), value)
        if "phk_" in value or "phs_" in value or "whsec_" in value:
            value = _ISSUED_SECRET.sub(lambda m: m.group(1) + "_[REDACTED]", value)
    return value if type(value) is str else str.__str__(value)  # always a plain str, as re.sub gives


def _is_secret_key(key: str) -> bool:
    verdict = _SECRET_KEY_VERDICTS.get(key)
    if verdict is None:
        verdict = _SECRET_KEYS.search(key) is not None
        if len(_SECRET_KEY_VERDICTS) < _MAX_KEY_VERDICTS:
            _SECRET_KEY_VERDICTS[key] = verdict
    return verdict


def _redact(value: Any, key: str = "") -> Any:
    if key and _is_secret_key(key):
        return "[REDACTED]"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    return value


_PLAIN_TYPES = (int, float, bool)


class LazyText:
    """A log context value made only when a line that carries it is written (a call's request id:
    most calls write no line at all). Made once: every line of the call carries the same text."""

    __slots__ = ("_make", "_text")
    _making = threading.Lock()  # only taken the first time the text is needed

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make
        self._text: str | None = None

    def __str__(self) -> str:
        text = self._text
        if text is None:
            with LazyText._making:
                text = self._text
                if text is None:
                    text = self._text = self._make()
        return text

    def __repr__(self) -> str:  # a renderer that was not told about LazyText shows the text
        return repr(str(self))

    def __eq__(self, other: object) -> bool:
        return str(self) == (str(other) if isinstance(other, LazyText) else other)

    def __hash__(self) -> int:
        return hash(str(self))


def _redact_event(event_dict: MutableMapping[str, Any], skip: frozenset[str]) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if type(value) is str:  # the common case, without the isinstance chain
            if key in skip:
                continue
            redacted = "[REDACTED]" if _is_secret_key(key) else redact_text(value)
            if redacted is not value:
                event_dict[key] = redacted
        elif value is None or type(value) in _PLAIN_TYPES:
            if _is_secret_key(key):
                event_dict[key] = "[REDACTED]"
        elif type(value) is LazyText:
            event_dict[key] = "[REDACTED]" if _is_secret_key(key) else redact_text(str(value))
        else:
            event_dict[key] = _redact(value, key)
    return event_dict


# Set by the processors before redaction in configure_logging (add_log_level, TimeStamper), always
# to a level name or an ISO time: nothing to redact there.
_STAMPED = frozenset({"level", "timestamp"})


def redaction_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Redact card numbers and secrets from every field; runs after the level and time stamps."""
    return _redact_event(event_dict, _STAMPED)


class _CurrentStderr:
    """Writes to whatever sys.stderr is now (test runners and daemons swap it), not the one at start-up."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _Configured:
    """The lowest level configure_logging lets through (NOTSET until it runs: structlog's defaults print all)."""

    min_level = logging.NOTSET


def is_enabled(level: int) -> bool:
    """Whether a line at `level` (logging.INFO, ...) would be written: lets a hot path skip building the
    fields of a line that the configured level drops anyway."""
    return level >= _Configured.min_level


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    min_level = logging.getLevelName(level.upper())
    renderer: Any = (structlog.processors.JSONRenderer() if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redaction_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    _Configured.min_level = min_level


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
