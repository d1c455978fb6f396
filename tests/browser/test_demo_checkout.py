"""The README's way to open a checkout page: `payhub demo seed` then `payhub demo checkout` against a
running `payhub serve` prints a page URL; the page opens in the browser and takes the sandbox card."""

from __future__ import annotations

import re

import pytest

from tests.browser.harness import Browser, MerchantSite
from tests.conftest import RunningServer
from tests.e2e.test_ledger_e2e import _cli, demo  # noqa: F401 - `demo` is the fixture this module uses

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.xdist_group("cashier-browser")]


def test_the_demo_checkout_command_prints_a_page_that_takes_a_card(
        demo: tuple[RunningServer, str, str], browser: Browser, merchant_site: MerchantSite) -> None:  # noqa: F811
    server, _merchant, _key = demo
    made = _cli(server, "demo", "checkout", "--locale", "en", "--amount", "2500",
                "--return-url", f"{merchant_site.url}/orders/{{order}}")
    assert made.returncode == 0, made.stderr
    url = re.search(r"open the checkout page: (\S+)", made.stdout)
    assert url, made.stdout
    browser.open(url.group(1))
    assert browser.wait_for("#amount").text == "25.00" and browser.find(".merchant-name").text == "Demo Store"
    browser.shot("demo-checkout")
    browser.pay_by_card("4242 4242 4242 4242", 2099)
    browser.click("#pay-button")
    browser.wait_for("#result-success")
    browser.shot("paid")
    browser.wait_for("#thanks")
    assert browser.driver.current_url.startswith(f"{merchant_site.url}/orders/demo-")
