"""Structured logs (structlog, JSON by default) with redaction of card numbers and secrets."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# Keys whose values are never logged, whatever they hold.
_SECRET_KEYS = re.compile(r"(secret|token|password|passwd|credential|authorization|api_key|cvc|cvv|"
                          r"card_number|pan|private_key|signing_key)", re.IGNORECASE)
# 13-19 digit runs (optionally spaced or dashed) look like card numbers: keep only the last four.
_PAN = re.compile(r"\b(?:\d[ -]?){9,15}(\d{4})\b")
# Bearer secrets payhub issues carry a recognisable prefix.
_ISSUED_SECRET = re.compile(r"\b(phk|phs|whsec)_[A-Za-z0-9_\-]{8,}")


def redact_text(value: str) -> str:
    value = _PAN.sub(lambda m: "****" + m.group(1), value)
    return _ISSUED_SECRET.sub(lambda m: m.group(1) + "_[REDACTED]", value)


def _redact(value: Any, key: str = "") -> Any:
    if key and _SECRET_KEYS.search(key):
        return "[REDACTED]"
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redact(v) for v in value]
    return value


def redaction_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _redact(event_dict[key], key)
    return event_dict


class _CurrentStderr:
    """Writes to whatever sys.stderr is now (test runners and daemons swap it), not the one at start-up."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(level: str = "info", fmt: str = "json") -> None:
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
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
