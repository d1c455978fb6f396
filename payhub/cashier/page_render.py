"""Jinja2 rendering of the hosted page (autoescaped; templates in payhub/cashier/templates)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from payhub.cashier.page_assets import asset_url
from payhub.cashier.page_text import Texts
from payhub.cashier.page_view import PageView, PanelView

TEMPLATES = Path(__file__).parent / "templates"


@cache
def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False, auto_reload=False)
    env.globals["asset"] = asset_url
    return env


def render_page(page: PageView) -> str:
    return environment().get_template("page.html").render(page=page, panel=page.panel, t=page.t)


def render_panel(panel: PanelView, t: Texts) -> str:
    return environment().get_template("_panel.html").render(panel=panel, t=t)


def render_error(t: Texts, message: str) -> str:
    return environment().get_template("error.html").render(t=t, message=message)
