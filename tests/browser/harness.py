"""Headless Chromium for the cashier's browser tests: Debian's /usr/bin/chromium driven through
/usr/bin/chromedriver (`make browser` installs both; Selenium Manager is never asked to download
anything, since the driver's path is given), at a phone and a PC viewport, saving a screenshot of
every step under test-output/browser/<test>/<viewport>/NN-step.png."""

from __future__ import annotations

import base64
import io
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"
IPHONE_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
             "Version/17.5 Mobile/15E148 Safari/604.1")


@dataclass(frozen=True)
class Viewport:
    name: str
    width: int
    height: int
    mobile: bool


PHONE = Viewport("phone", 390, 844, mobile=True)
PC = Viewport("pc", 1366, 768, mobile=False)
VIEWPORTS = (PHONE, PC)


def chrome(viewport: Viewport) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
                "--lang=en-US"):
        options.add_argument(arg)
    if viewport.mobile:
        options.add_experimental_option("mobileEmulation", {
            "deviceMetrics": {"width": viewport.width, "height": viewport.height, "pixelRatio": 2, "touch": True},
            "userAgent": IPHONE_UA})
    else:
        options.add_argument(f"--window-size={viewport.width},{viewport.height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    if not viewport.mobile:  # --window-size sets the window; make the page's viewport exactly this size
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": viewport.width, "height": viewport.height, "deviceScaleFactor": 1, "mobile": False})
    return driver


class Browser:
    """One test's browser at one viewport; `shot(step)` saves the whole page as the next numbered PNG."""

    def __init__(self, driver: webdriver.Chrome, viewport: Viewport, test_name: str) -> None:
        self.driver = driver
        self.viewport = viewport
        self.folder = OUTPUT / re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name) / viewport.name
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.step = 0

    def open(self, url: str) -> None:
        self.driver.get(url)

    def shot(self, name: str) -> Path:
        self.step += 1
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        image = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": max(size["width"], self.viewport.width),
                     "height": max(size["height"], self.viewport.height), "scale": 1}})
        path = self.folder / f"{self.step:02d}-{name}.png"
        path.write_bytes(base64.b64decode(image["data"]))
        return path

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def wait_for(self, css: str, timeout: float = 45) -> WebElement:
        """The first visible element matching `css`, once there is one."""
        def visible(driver: Any) -> WebElement | bool:
            for element in driver.find_elements(By.CSS_SELECTOR, css):
                if element.is_displayed():
                    return element  # type: ignore[no-any-return]
            return False
        try:
            found = WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(visible)
        except TimeoutException:
            self.shot("timeout")
            raise AssertionError(f"no visible {css!r} after {timeout} s at {self.driver.current_url}; "
                                 f"page: {self.driver.find_element(By.TAG_NAME, 'body').text[:800]}") from None
        assert isinstance(found, WebElement)
        return found

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 45) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.shot("timeout")
                raise AssertionError(f"{what}: not after {timeout} s at {self.driver.current_url}")
            time.sleep(0.1)

    def fill(self, css: str, text: str) -> None:
        field = self.wait_for(css)
        field.clear()
        field.send_keys(text)

    def click(self, css: str) -> None:
        element = self.wait_for(css)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        element.click()

    def choose(self, method: str) -> None:
        self.click(f'label.method[data-method="{method}"]')

    def pay_by_card(self, number: str, year: int) -> None:
        self.choose("CARD")
        self.fill("#card-number", number)
        self.fill("#card-month", "12")
        self.fill("#card-year", str(year))
        self.fill("#card-cvc", "123")

    def read_qr(self, css: str = "#qr-image") -> str:
        """Scan the QR code on screen as a phone camera would: decode the image the page shows."""
        element = self.wait_for(css)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        self.wait_until(lambda: bool(self.driver.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", element)), "the QR image loaded")
        found = zxingcpp.read_barcodes(Image.open(io.BytesIO(element.screenshot_as_png)))
        assert found, "the QR image does not decode"
        return str(found[0].text)

    def console_errors(self) -> list[str]:
        entries: list[dict[str, Any]] = self.driver.get_log("browser")  # type: ignore[no-untyped-call]
        return [str(entry["message"]) for entry in entries if entry["level"] == "SEVERE"]


class MerchantSite:
    """The merchant's return page (return_url): a tiny local web server saying thank you."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b"<!doctype html><title>Tea House</title><h1 id='thanks'>Thank you for your order</h1>"
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
