"""The check every request passes before a servicer sees it: one walk over the fields it sets.

What it checks, for every field of every message (also nested, repeated and map values):
- strings carry no NUL character (PostgreSQL refuses it in text; it is never meaningful input);
- timestamps and durations are in the range google.protobuf defines (the servicers convert them
  with `ToDatetime`/`ToTimedelta`, which fail outside it);
- enum fields hold a number the contract defines (an unknown number would be stored as such);
- the limits the contract declares on the field with `(payhub.common.v1.rules)`
  (protos/payhub/common/v1/validation.proto): max_length, max_items, max_key_length, pattern,
  format, required. The contract is the one place a limit is written down; this module reads it from
  the descriptors, so a limit added to a .proto is enforced after `make gen` without code here.

Bad input answers INVALID_ARGUMENT naming each field (at most MAX_VIOLATIONS, then how many more) and
never quotes the bad value (it may be a card number, a secret or a megabyte of text).

Cost (it runs on every RPC, the payment path included): what to check is worked out once per message
type (`_plan`), and a request costs one `ListFields()` per message it sets plus a dictionary lookup
and a few comparisons per set field. See tests/unit/server/test_validation.py for the figure.
"""

from __future__ import annotations

import ipaddress
import keyword
import re
import sys
import threading
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from payhub.common.v1 import validation_pb2

from payhub.kernel.errors import FieldViolation, InvalidArgument
from payhub.server.errors import MAX_VIOLATIONS  # a reply names at most this many; keep no more

# google.protobuf.Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z
MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS = -62_135_596_800, 253_402_300_799
MAX_DURATION_SECONDS = 315_576_000_000  # +-10,000 years
_NANOS = 1_000_000_000
_RULES = validation_pb2.rules
_IP_ADDRESS = validation_pb2.STRING_FORMAT_IP_ADDRESS
# A map entry is named by its key when the key is short and plain, otherwise by its position.
_SHORT_KEY = re.compile(r"[\w.:/-]{1,40}")

_STRING, _BYTES, _MESSAGE_TYPE, _ENUM_TYPE = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES,
                                              FieldDescriptor.TYPE_MESSAGE, FieldDescriptor.TYPE_ENUM)


class _Found:
    """The violations of one request, at most MAX_VIOLATIONS kept."""

    __slots__ = ("items", "more")

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []
        self.more = 0

    def add(self, field: str, description: str) -> None:
        if len(self.items) < MAX_VIOLATIONS:
            self.items.append(FieldViolation(field, description))
        else:
            self.more += 1


# A check gets the field's value, the path of the field ("payment.customer.id") and the collector.
Check = Callable[[Any, str, _Found], None]


# How a field is checked (the first item of its plan entry). The first three are decided inline in
# `_walk` by a cheap test that every bad value fails (a function call per field was most of the cost);
# only a value that fails it goes to the field's check function, which names the violation.
_TEXT = 0       # a string with no pattern or format: a NUL character or too long; arg = the limit
_ENUM = 1       # arg = the numbers the contract defines
_MESSAGE = 2    # a nested message (not a Timestamp or Duration): arg = "name."
_OTHER = 3      # anything else: the check function decides

# An entry: (how, the field's name, arg, the check function). The field's name is read once (a
# descriptor makes a new string on every `.name`).
_Entry = tuple[int, str, Any, "Check"]


# A message type with at most this many fields to check is read field by field (`_Plan.direct`):
# asking a few fields by name costs less than ListFields() building its list of every set field.
DIRECT_MAX_CHECKS = 5


class _Plan:
    """What to check in one message type: an entry per field that needs one, and required fields.
    `direct`, for a type with few such fields: (entry, whether the field is a singular message) in
    field number order (ListFields' order), read by name; a field at its default value is skipped
    (as ListFields leaves out a field that is not set; no check finds anything wrong with a default
    value), a singular message unless HasField. `run`: `direct`'s walk as a function of its own,
    written for the type (`_direct_walker`)."""

    __slots__ = ("checks", "direct", "required", "run")

    def __init__(self, checks: dict[FieldDescriptor, _Entry], required: list[tuple[str, bool]],
                 direct: tuple[tuple[_Entry, bool], ...] | None = None) -> None:
        self.checks = checks
        self.required = required
        self.direct = direct
        self.run: Callable[[Message, str, _Found], None] | None = (
            _direct_walker(direct, required) if direct is not None else None)


# Keyed by the message class (cheaper to get than the descriptor's full name); a class stands for one
# message type.
_plans: dict[type, _Plan] = {}
_plans_lock = threading.Lock()


def validate(message: Message) -> None:
    """Raise InvalidArgument naming every bad field of `message` (a request)."""
    found = _Found()
    _walk(message, "", found)
    if found.items:
        raise InvalidArgument(found.items, omitted=found.more)


def _walk(message: Message, prefix: str, found: _Found) -> None:
    plan = _plans.get(type(message))
    if plan is None:
        plan = _plan_for(message)
    run = plan.run
    if run is not None:
        run(message, prefix, found)
        return
    checks = plan.checks
    for field, value in message.ListFields():
        entry = checks.get(field)
        if entry is None:
            continue
        how = entry[0]
        if how == _TEXT:
            if "\x00" in value or len(value) > entry[2]:
                entry[3](value, prefix + entry[1], found)
        elif how == _ENUM:
            if value not in entry[2]:
                entry[3](value, prefix + entry[1], found)
        elif how == _MESSAGE:
            _walk(value, prefix + entry[2], found)
        else:
            entry[3](value, prefix + entry[1], found)
    for name, is_message in plan.required:
        if not (message.HasField(name) if is_message else getattr(message, name)):
            found.add(prefix + name, "is required")


def _direct_walker(direct: tuple[tuple[_Entry, bool], ...],
                   required: list[tuple[str, bool]]) -> Callable[[Message, str, _Found], None]:
    """The walk of a `_Plan.direct` and its required fields, spelt out for one message type: the fields
    read by name in field number order (a default value skipped, a singular message unless HasField),
    each checked as `_walk` checks what ListFields gives it, the required fields after them; no
    entry's kind and arguments looked up per call.
    Python source made from the entries (field names and the kinds' tests; the entries' limits, sets
    and check functions are passed in by name), compiled once per message type."""
    lines = ["def run(m, prefix, found):"]
    scope: dict[str, Any] = {"_walk": _walk}
    for i, ((how, name, arg, check), singular_message) in enumerate(direct):
        read = f"getattr(m, {name!r})" if keyword.iskeyword(name) else f"m.{name}"
        scope[f"arg{i}"], scope[f"check{i}"] = arg, check
        if singular_message:
            lines += [f"    if m.HasField({name!r}):", f"        v = {read}"]
        else:
            lines += [f"    v = {read}", "    if v:"]
        call = f"check{i}(v, prefix + {name!r}, found)"
        if how == _TEXT:
            lines += [f"        if '\\x00' in v or len(v) > arg{i}:", f"            {call}"]
        elif how == _ENUM:
            lines += [f"        if v not in arg{i}:", f"            {call}"]
        elif how == _MESSAGE:
            lines += [f"        _walk(v, prefix + arg{i}, found)"]
        else:
            lines += [f"        {call}"]
    for name, is_message in required:
        present = f"m.HasField({name!r})" if is_message else f"getattr(m, {name!r})"
        lines += [f"    if not {present}:", f"        found.add(prefix + {name!r}, 'is required')"]
    if len(lines) == 1:
        lines.append("    pass")
    # The source holds field names (identifiers the .proto declares; a keyword is read with getattr) and
    # numbered names of `scope`, never a value of a request.
    exec(compile("\n".join(lines), f"<payhub.server.validation walker {len(direct)}>", "exec"), scope)  # noqa: S102
    return scope["run"]  # type: ignore[no-any-return]


def _plan_for(message: Message) -> _Plan:
    with _plans_lock:
        plan = _plans.get(type(message))
        if plan is None:
            checks: dict[FieldDescriptor, _Entry] = {}
            required: list[tuple[str, bool]] = []
            descriptor: Any = message.DESCRIPTOR
            for field in descriptor.fields:
                rules = field.GetOptions().Extensions[_RULES] if field.GetOptions().HasExtension(_RULES) else None
                check = _field_check(field, rules)
                if check is not None:
                    checks[field] = _entry(field, rules, check)
                if rules is not None and rules.required:
                    required.append((field.name, field.type == _MESSAGE_TYPE))
            direct = None
            if len(checks) <= DIRECT_MAX_CHECKS:
                direct = tuple((checks[field], field.type == _MESSAGE_TYPE and not field.is_repeated)
                               for field in sorted(checks, key=lambda f: f.number))
            plan = _plans[type(message)] = _Plan(checks, required, direct)
        return plan


def _entry(field: FieldDescriptor, rules: Any, check: Check) -> _Entry:
    name = field.name
    if not field.is_repeated:
        if field.type == _STRING and (rules is None or (not rules.pattern and rules.format != _IP_ADDRESS)):
            return (_TEXT, name, (rules.max_length if rules is not None else 0) or sys.maxsize, check)
        if field.type == _ENUM_TYPE:
            enum_type: Any = field.enum_type
            return (_ENUM, name, frozenset(enum_type.values_by_number), check)
        if check is _message:
            return (_MESSAGE, name, name + ".", check)
    return (_OTHER, name, None, check)


def _field_check(field: FieldDescriptor, rules: Any) -> Check | None:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return _map_check(field, rules)
    element = _element_check(field, rules, "max_length")
    if not field.is_repeated:
        return element
    max_items = rules.max_items if rules is not None else 0
    if element is None and not max_items:
        return None

    def repeated(values: Any, path: str, found: _Found) -> None:
        if max_items and len(values) > max_items:
            found.add(path, f"must have at most {max_items} elements (has {len(values)})")
            return
        if element is not None:
            for i, value in enumerate(values):
                element(value, f"{path}[{i}]", found)
    return repeated


def _map_check(field: FieldDescriptor, rules: Any) -> Check:
    entry: Any = field.message_type
    key_check = _element_check(entry.fields_by_name["key"], rules, "max_key_length")
    value_check = _element_check(entry.fields_by_name["value"], rules, "max_length")
    max_items = rules.max_items if rules is not None else 0

    def mapping(values: Any, path: str, found: _Found) -> None:
        if max_items and len(values) > max_items:
            found.add(path, f"must have at most {max_items} entries (has {len(values)})")
            return
        for i, (key, value) in enumerate(values.items()):
            entry = f'{path}["{key}"]' if _SHORT_KEY.fullmatch(str(key)) else f"{path}[#{i}]"
            if key_check is not None:
                key_check(key, entry + ".key", found)
            if value_check is not None:
                value_check(value, entry, found)
    return mapping


def _element_check(field: FieldDescriptor, rules: Any, length_rule: str) -> Check | None:
    kind = field.type
    if kind == _STRING:
        return _string_check(rules, length_rule)
    if kind == _ENUM_TYPE:
        enum_type: Any = field.enum_type
        return _enum_check(frozenset(enum_type.values_by_number))
    if kind == _MESSAGE_TYPE:
        message_type: Any = field.message_type
        name = message_type.full_name
        if name == "google.protobuf.Timestamp":
            return _timestamp
        if name == "google.protobuf.Duration":
            return _duration
        return _message
    if kind == _BYTES and rules is not None and getattr(rules, length_rule):
        limit = getattr(rules, length_rule)

        def byte_length(value: bytes, path: str, found: _Found) -> None:
            if len(value) > limit:
                found.add(path, f"must be at most {limit} bytes (has {len(value)})")
        return byte_length
    return None


def _string_check(rules: Any, length_rule: str) -> Check:
    limit = getattr(rules, length_rule) if rules is not None else 0
    pattern = re.compile(rules.pattern) if rules is not None and rules.pattern else None
    ip_address = rules is not None and rules.format == _IP_ADDRESS

    def string(value: str, path: str, found: _Found) -> None:
        if "\x00" in value:
            found.add(path, "must not contain a NUL character")
        elif limit and len(value) > limit:
            found.add(path, f"must be at most {limit} characters (has {len(value)})")
        elif value and pattern is not None and pattern.fullmatch(value) is None:
            found.add(path, f"must match {pattern.pattern}")
        elif value and ip_address and not _is_ip_address(value):
            found.add(path, "must be an IPv4 or IPv6 address")
    return string


def _is_ip_address(value: str) -> bool:
    if len(value) > 64:  # the longest text form (IPv6 with an IPv4 tail and a zone) is shorter
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _enum_check(defined: frozenset[int]) -> Check:
    def enum(value: int, path: str, found: _Found) -> None:
        if value not in defined:
            found.add(path, f"{value} is not a defined value")
    return enum


def _message(value: Message, path: str, found: _Found) -> None:
    _walk(value, path + ".", found)


def _timestamp(value: Any, path: str, found: _Found) -> None:
    if not (MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS and 0 <= value.nanos < _NANOS):
        found.add(path, "must be a timestamp between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999999Z")


def _duration(value: Any, path: str, found: _Found) -> None:
    seconds, nanos = value.seconds, value.nanos
    if not (-MAX_DURATION_SECONDS <= seconds <= MAX_DURATION_SECONDS and -_NANOS < nanos < _NANOS) \
            or (seconds > 0 > nanos) or (seconds < 0 < nanos):
        found.add(path, "must be a duration of at most 10,000 years whose seconds and nanos have the same sign")
