"""Ids: prefix, 26 Crockford base32 digits (48 bits of milliseconds, 80 random bits), never repeated."""

from __future__ import annotations

import os
import time

from payhub.kernel.ids import new_id

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def test_ids_carry_their_time_and_never_repeat() -> None:
    before = int(time.time() * 1000)
    made = [new_id("pay") for _ in range(5000)]  # several blocks of random digits
    after = int(time.time() * 1000)
    assert len(set(made)) == len(made)
    for ident in made:
        prefix, _, digits = ident.partition("_")
        assert prefix == "pay" and len(digits) == 26 and set(digits) <= set(CROCKFORD)
        value = 0
        for digit in digits:
            value = value * 32 + CROCKFORD.index(digit)
        assert before <= value >> 80 <= after
    assert [i[4:14] for i in made] == sorted(i[4:14] for i in made)  # time-ordered


def test_a_forked_child_never_repeats_its_parents_random_digits() -> None:
    new_id("x")  # the parent has random digits ready
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, new_id("x")[-16:].encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert child != new_id("x")[-16:]


def test_every_random_digit_takes_every_value() -> None:
    """Each of the 16 random digits is uniform over the 32 digits (5 random bits each, 80 in all):
    over 5,000 ids each position shows all 32 (a position missing one would be p < 1e-60)."""
    made = [new_id("pay")[-16:] for _ in range(5000)]
    for position in range(16):
        assert {ident[position] for ident in made} == set(CROCKFORD)
