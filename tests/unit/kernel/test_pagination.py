import pytest

from payhub.kernel.errors import InvalidArgument
from payhub.kernel.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, next_token, parse_page


def test_page_size_defaults_and_caps() -> None:
    assert parse_page(0, "").size == DEFAULT_PAGE_SIZE
    assert parse_page(10_000, "").size == MAX_PAGE_SIZE


def test_tokens_walk_all_rows_once() -> None:
    rows = list(range(1, 8))
    seen, token = [], ""
    while True:
        page = parse_page(3, token, {"state": "x"})
        batch = [r for r in rows if page.after is None or r > page.after][: page.size + 1]
        seen += batch[: page.size]
        token = next_token(batch, page, lambda r: r, {"state": "x"})
        if not token:
            break
    assert seen == rows


def test_token_from_other_filters_or_garbage_names_the_field() -> None:
    page = parse_page(1, "")
    token = next_token([1, 2], page, lambda r: r, {"state": "a"})
    for bad in (token, "not-a-token"):
        with pytest.raises(InvalidArgument) as err:
            parse_page(1, bad, {"state": "b"})
        assert err.value.violations[0].field == "page_token"


def test_negative_page_size_is_rejected() -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_page(-1, "")
    assert err.value.violations[0].field == "page_size"
