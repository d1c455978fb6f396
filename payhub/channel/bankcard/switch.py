"""The simulated card switch's book and rules (the bank's side; it never shares the adapter's
decisions). In memory: a simulator for tests and demos. Thread-safe (one lock).

Seeded test cards (any future expiry on the request is accepted; CVV2 `123` when sent):

| card number      | behaviour                                                                   |
|------------------|-----------------------------------------------------------------------------|
| 4761739001010010 | approved (balance 1,000,000.00)                                              |
| 4761739001010028 | balance 0: declined `51` insufficient funds                                  |
| 4761739001010036 | expired account: declined `54`                                               |
| 4761739001010044 | declined `05` do not honour                                                  |
| 4761739001010051 | declined `41` lost card                                                      |
| 4761739001010069 | approved, then no answer (the acquirer times out); reversals acknowledged    |
| 4761739001010077 | approved, then the connection is dropped; reversals acknowledged             |
| 4761739001010085 | approved, connection dropped; reversal refused `21` (cannot back out): stands |
| any other PAN    | declined `14` invalid card number                                            |

The control interface (simulator.py) can make the next requests time out, drop, answer `68` or
decline with any code, make reversals go unanswered or be refused, and add accounts.
"""

from __future__ import annotations

import csv
import io
import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from payhub.channel.bankcard import wire

APPROVE_CARD = "4761739001010010"
NO_FUNDS_CARD = "4761739001010028"
EXPIRED_CARD = "4761739001010036"
DO_NOT_HONOR_CARD = "4761739001010044"
LOST_CARD = "4761739001010051"
TIMEOUT_CARD = "4761739001010069"
DROP_CARD = "4761739001010077"
IRREVERSIBLE_CARD = "4761739001010085"
TEST_CVV2 = "123"
RICH = 100_000_000


@dataclass
class Account:
    balance_minor: int
    expiry: str = "9912"             # YYMM
    decline_code: str = ""           # always decline with this code
    fault: str = ""                  # "timeout" | "drop": after approving, answer that way
    reversible: bool = True


def seeded_accounts() -> dict[str, Account]:
    return {
        APPROVE_CARD: Account(RICH), NO_FUNDS_CARD: Account(0), EXPIRED_CARD: Account(RICH, expiry="2001"),
        DO_NOT_HONOR_CARD: Account(RICH, decline_code="05"), LOST_CARD: Account(RICH, decline_code="41"),
        TIMEOUT_CARD: Account(RICH, fault="timeout"), DROP_CARD: Account(RICH, fault="drop"),
        IRREVERSIBLE_CARD: Account(RICH, fault="drop", reversible=False),
    }


@dataclass
class Txn:
    terminal_id: str
    stan: str
    transmission: str
    mti: str
    processing_code: str
    pan: str = field(repr=False)
    amount_minor: int
    currency: str
    rrn: str
    auth_code: str
    response_code: str
    time: datetime
    state: str = "APPROVED"          # APPROVED DECLINED REVERSED
    completed_minor: int = 0         # authorisations: the completion's amount
    refunded_minor: int = 0
    original: tuple[str, str, str] | None = None  # refunds and completions: the original's key

    @property
    def key(self) -> tuple[str, str, str]:
        return self.terminal_id, self.stan, self.transmission


@dataclass(frozen=True)
class Reply:
    message: wire.Message | None     # None: no answer
    fault: str = ""                  # "timeout" (hold, answer nothing) or "drop" (close the connection)


class CardSwitch:
    def __init__(self, not_found_code: str = "25") -> None:
        self.accounts = seeded_accounts()
        self.txns: dict[tuple[str, str, str], Txn] = {}
        self.replies: dict[tuple[str, str, str, str], wire.Message] = {}  # (mti class, key) -> answer, for repeats
        self.reversals: list[dict[str, str]] = []
        self.next_faults: list[str] = []          # applied to the next pay/auth requests, in order
        self.reversal_mode = "answer"             # "answer" | "ignore" | "refuse:<code>"
        self.not_found_code = not_found_code
        self._lock = threading.Lock()
        self._rrn = itertools.count(int(time.time()) % 10**6 * 1000)

    # -- control ------------------------------------------------------------------------------
    def control(self, next_fault: str = "", count: int = 1, reversals: str = "") -> None:
        with self._lock:
            if next_fault:
                self.next_faults.extend([next_fault] * count)
            if reversals:
                self.reversal_mode = reversals

    def add_account(self, pan: str, account: Account) -> None:
        with self._lock:
            self.accounts[pan] = account

    def reversal_log(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(r) for r in self.reversals]

    def transactions(self) -> list[dict[str, str | int]]:
        with self._lock:
            return [{"terminal_id": t.terminal_id, "stan": t.stan, "mti": t.mti, "processing_code": t.processing_code,
                     "card_last4": t.pan[-4:], "amount_minor": t.amount_minor, "currency": t.currency, "rrn": t.rrn,
                     "response_code": t.response_code, "state": t.state, "completed_minor": t.completed_minor,
                     "refunded_minor": t.refunded_minor} for t in self.txns.values()]

    # -- messages -----------------------------------------------------------------------------
    def handle(self, request: wire.Message) -> Reply:
        mti = request.get("t", "")
        with self._lock:
            if mti == "0800":
                return Reply(self._answer(request, "00"))
            if mti in ("0400", "0401", "0420", "0421"):
                return self._reverse(request)
            key = (request.get("41", "").strip(), request.get("11", ""), request.get("7", ""))
            repeat = self.replies.get((mti[:2], *key))
            if repeat is not None:  # a repeated request: the same answer, nothing booked twice
                return Reply(repeat)
            fault = self.next_faults.pop(0) if self.next_faults else ""
            if mti in ("0220", "0221"):
                answer = self._complete(request, key)
            elif request.get("3", "")[:2] == "20":
                answer = self._refund(request, key)
            elif mti in ("0100", "0200"):
                answer, fault = self._purchase(request, key, fault)
            else:
                answer = self._answer(request, "12")
            self.replies[(mti[:2], *key)] = answer  # a repeat learns the outcome, even after a fault
            if fault in ("timeout", "drop"):
                return Reply(None, fault)
            return Reply({**answer, "39": "68"} if fault == "late" else answer)

    def _purchase(self, request: wire.Message, key: tuple[str, str, str], fault: str) -> tuple[wire.Message, str]:
        pan, amount = request.get("2", ""), int(request.get("4", "0"))
        account = self.accounts.get(pan)
        code = self._purchase_code(request, account, amount)
        fault = fault or (account.fault if account else "")
        if fault.startswith("decline:"):
            code, fault = fault.partition(":")[2], ""
        elif fault == "approve" and account is not None:  # approve whatever the card's rules say
            code, fault = "00", ""
        approved = code == "00"
        if approved and account is not None:
            account.balance_minor -= amount
        txn = self._book(request, key, pan, amount, code, "APPROVED" if approved else "DECLINED")
        return self._answer(request, code, txn), fault

    def _purchase_code(self, request: wire.Message, account: Account | None, amount: int) -> str:
        if account is None:
            return "14"
        today = datetime.now(UTC).strftime("%y%m")
        if account.expiry < today or request.get("14", "9999") < today:
            return "54"
        cvv2 = wire.parse_cvv2(request.get("48", ""))
        if cvv2 and cvv2 != TEST_CVV2:
            return "N7"
        if account.decline_code:
            return account.decline_code
        if amount <= 0:
            return "13"
        return "51" if amount > account.balance_minor else "00"

    def _complete(self, request: wire.Message, key: tuple[str, str, str]) -> wire.Message:
        auth = self.txns.get(self._original_key(request))
        amount = int(request.get("4", "0"))
        if auth is None or auth.mti != "0100":
            return self._answer(request, self.not_found_code)
        if auth.state != "APPROVED" or auth.completed_minor:
            return self._answer(request, "12", auth)
        if not 0 < amount <= auth.amount_minor:
            return self._answer(request, "13", auth)
        auth.completed_minor = amount
        account = self.accounts.get(auth.pan)
        if account is not None:
            account.balance_minor += auth.amount_minor - amount  # the rest of the hold is released
        completion = self._book(request, key, auth.pan, amount, "00", "APPROVED", auth.key)
        completion.rrn = auth.rrn
        return self._answer(request, "00", auth)

    def _refund(self, request: wire.Message, key: tuple[str, str, str]) -> wire.Message:
        original = self.txns.get(self._original_key(request))
        amount = int(request.get("4", "0"))
        if original is None:
            return self._answer(request, self.not_found_code)
        taken = original.completed_minor if original.mti == "0100" else original.amount_minor
        if original.state != "APPROVED" or not taken:
            return self._answer(request, "12")
        if not 0 < amount <= taken - original.refunded_minor:
            return self._answer(request, "13")
        original.refunded_minor += amount
        account = self.accounts.get(original.pan)
        if account is not None:
            account.balance_minor += amount
        refund = self._book(request, key, original.pan, amount, "00", "APPROVED", original.key)
        return self._answer(request, "00", refund)

    def _reverse(self, request: wire.Message) -> Reply:
        target = self._original_key(request)
        original = self.txns.get(target)
        self.reversals.append({"mti": request["t"], "stan": request.get("11", ""), "original_stan": target[1],
                               "terminal_id": target[0], "amount_minor": request.get("4", ""),
                               "time": datetime.now(UTC).isoformat()})
        if self.reversal_mode == "ignore":
            return Reply(None, "timeout")
        if self.reversal_mode.startswith("refuse:"):
            return Reply(self._answer(request, self.reversal_mode.partition(":")[2]))
        if original is None:
            return Reply(self._answer(request, self.not_found_code))
        account = self.accounts.get(original.pan)
        if original.state == "APPROVED" and (
                original.completed_minor or original.refunded_minor or (account and not account.reversible)):
            return Reply(self._answer(request, "21", original))  # cannot back it out: the original stands
        if original.state == "APPROVED":
            original.state = "REVERSED"
            if account is not None:
                refund = original.processing_code[:2] == "20"
                account.balance_minor += -original.amount_minor if refund else original.amount_minor
                if refund and original.original in self.txns:
                    self.txns[original.original].refunded_minor -= original.amount_minor
        return Reply(self._answer(request, "00", original))

    # -- helpers ------------------------------------------------------------------------------
    def _original_key(self, request: wire.Message) -> tuple[str, str, str]:
        _, stan, transmission, _ = wire.parse_original_data(request.get("90", "0" * 42))
        return request.get("41", "").strip(), stan, transmission

    def _book(self, request: wire.Message, key: tuple[str, str, str], pan: str, amount: int, code: str,
              state: str, original: tuple[str, str, str] | None = None) -> Txn:
        currency = wire.CURRENCY_ALPHA.get(request.get("49", ""), "")
        txn = Txn(key[0], key[1], key[2], request["t"][:3] + "0", request.get("3", ""), pan, amount, currency,
                  f"{next(self._rrn) % 10**12:012d}", f"{next(self._rrn) % 10**6:06d}" if code == "00" else "",
                  code, datetime.now(UTC), state, original=original)
        self.txns[key] = txn
        return txn

    def _answer(self, request: wire.Message, code: str, txn: Txn | None = None) -> wire.Message:
        answer = {"t": wire.response_mti(request["t"]), "39": code}
        for f in ("3", "4", "7", "11", "32", "41", "42", "49"):
            if f in request:
                answer[f] = request[f]
        if txn is not None:
            answer["37"] = txn.rrn
            if txn.auth_code:
                answer["38"] = txn.auth_code
        return answer

    # -- settlement ---------------------------------------------------------------------------
    def settlement_file(self, day: str, terminal_id: str = "") -> bytes:
        """CSV of the day's (UTC, YYYYMMDD) money movements for a terminal: approved sales,
        completions and refunds that were not reversed, then a TOTAL line (count, net minor units)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["type", "terminal_id", "stan", "rrn", "auth_code", "processing_code", "amount_minor",
                         "currency", "time"])
        count = net = 0
        with self._lock:
            for t in self.txns.values():
                kind = _settlement_kind(t)
                if not kind or t.time.strftime("%Y%m%d") != day or (terminal_id and t.terminal_id != terminal_id):
                    continue
                amount = -t.amount_minor if kind == "REFUND" else t.amount_minor
                writer.writerow([kind, t.terminal_id, t.stan, t.rrn, t.auth_code, t.processing_code, amount,
                                 t.currency, t.time.isoformat()])
                count, net = count + 1, net + amount
        writer.writerow(["TOTAL", terminal_id, "", "", "", "", net, "", count])
        return out.getvalue().encode()


def _settlement_kind(t: Txn) -> str:
    if t.state != "APPROVED":
        return ""
    if t.processing_code[:2] == "20":
        return "REFUND"
    return {"0200": "SALE", "0220": "COMPLETION"}.get(t.mti, "")  # an authorisation moves money when completed
