"""The permission table (payhub/server/permissions.py) says exactly what each RPC's "Callers:"
comment in protos/ says, for every RPC of every .proto file (an RPC added later is covered as soon as
its proto is).

The grammar of a "Callers:" paragraph (it runs up to "Errors:" or the end of the comment) is kept
small on purpose, so this parser stays robust:

* Clauses are separated by `;` or `. ` outside parentheses.
* Staff roles: every role name in backticks outside parentheses (`admin`, `operations`, `finance`,
  `business`), or the words "every staff role". `admin` may call everything anyway.
* A clause naming "merchant key(s)" or "merchant API key(s)" opens the RPC to full merchant keys,
  unless it says PERMISSION_DENIED outside its parentheses ("Merchant keys: PERMISSION_DENIED").
  Read-only keys may call it only when that clause says "also read-only" or "read-only keys
  included"; anything else ("not read-only", "read-only keys: PERMISSION_DENIED", nothing) means
  full keys only.
* Anything else (the internal service principal, the session holder, the cashier, the scheduler) is
  not a row of the table: the internal service principal may call every RPC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from payhub.identity.principal import Role
from payhub.server.permissions import PERMISSIONS, Access

PROTOS = Path(__file__).resolve().parents[3] / "protos"
ROLE_NAMES = {r.value: r for r in Role if r is not Role.ADMIN}


@dataclass(frozen=True)
class Rpc:
    method: str  # "/package.Service/Method"
    callers: str  # the "Callers:" paragraph, "" when the comment has none


def rpcs_in(proto: Path) -> list[Rpc]:
    package, service, comment, found = "", "", [], []
    for raw in proto.read_text().splitlines():
        line = raw.strip()
        if line.startswith("//"):
            comment.append(line[2:].strip())
            continue
        if m := re.match(r"package ([\w.]+);", line):
            package = m.group(1)
        elif m := re.match(r"service (\w+)", line):
            service = m.group(1)
        elif m := re.match(r"rpc (\w+)\s*\(", line):
            text = " ".join(comment)
            callers = re.search(r"Callers:(.*?)(?:Errors:|$)", text)
            found.append(Rpc(f"/{package}.{service}/{m.group(1)}", callers.group(1).strip() if callers else ""))
        comment = []
    return found


def all_rpcs() -> list[Rpc]:
    return [rpc for proto in sorted(PROTOS.rglob("*.proto")) for rpc in rpcs_in(proto)]


def _outside_parentheses(text: str) -> str:
    depth, out = 0, []
    for ch in text:
        depth += ch == "("
        if depth == 0:
            out.append(ch)
        depth -= ch == ")" and depth > 0
    return "".join(out)


def _clauses(text: str) -> list[str]:
    depth, start, clauses = 0, 0, []
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and (ch == ";" or (ch == "." and text[i + 1:i + 2] in (" ", ""))):
            clauses.append(text[start:i])
            start = i + 1
    clauses.append(text[start:])
    return [c.strip() for c in clauses if c.strip()]


def parse_callers(callers: str) -> Access:
    bare = _outside_parentheses(callers)
    roles = {ROLE_NAMES[name] for name in re.findall(r"`(\w+)`", bare) if name in ROLE_NAMES}
    if "every staff role" in bare:
        roles = set(ROLE_NAMES.values())
    merchant = read_only = False
    for clause in _clauses(callers):
        head = _outside_parentheses(clause)
        if not re.search(r"merchant (API )?keys?\b", head, re.IGNORECASE) or "PERMISSION_DENIED" in head:
            continue
        merchant = True
        read_only = read_only or bool(re.search(r"also read-only|read-only keys included", clause))
    return Access(frozenset(roles), merchant=merchant, read_only_key=read_only)


def _describe(access: Access) -> str:
    keys = "merchant keys incl. read-only" if access.read_only_key else "full merchant keys" if access.merchant \
        else "no merchant keys"
    return f"staff {sorted(r.value for r in access.roles)}, {keys}"


def test_the_grammar_reads_the_usual_phrasings() -> None:
    assert parse_callers("merchant keys (own merchant, also read-only); every staff role.") == \
        Access(frozenset(ROLE_NAMES.values()), merchant=True, read_only_key=True)
    assert parse_callers("merchant keys (own; read-only keys: PERMISSION_DENIED); staff `admin`, `finance`.") == \
        Access(frozenset({Role.FINANCE}), merchant=True)
    assert parse_callers("staff `admin`, `finance`. Merchant keys: PERMISSION_DENIED (platform accounts).") == \
        Access(frozenset({Role.FINANCE}))
    assert parse_callers("staff `operations` (merchant keys: PERMISSION_DENIED).") == \
        Access(frozenset({Role.OPERATIONS}))
    assert parse_callers("the internal service principal and `admin` only.") == Access()


def test_every_rpc_has_a_callers_comment_and_a_row() -> None:
    rpcs = all_rpcs()
    assert len(rpcs) > 80
    assert [r.method for r in rpcs if not r.callers] == []
    assert [r.method for r in rpcs if r.method not in PERMISSIONS] == []


def test_the_table_says_what_the_callers_comments_say() -> None:
    disagreements = []
    for rpc in all_rpcs():
        documented = parse_callers(rpc.callers)
        table = PERMISSIONS.get(rpc.method)
        if table is not None and table != documented:
            disagreements.append(f"{rpc.method}: proto says {_describe(documented)}; table says {_describe(table)}")
    assert disagreements == []
