import json

import pytest
import structlog

from payhub.kernel.logging import configure_logging, redact_text


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
