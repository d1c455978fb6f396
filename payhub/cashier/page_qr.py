"""QR codes drawn by payhub: the page shows the channel's QR content (Alipay `qr_code`, WeChat
`code_url`) as an SVG image served from payhub, so no QR library or service is loaded by the browser."""

from __future__ import annotations

import io

import segno

# Error correction M (15 %) keeps the code small; a quiet zone of 4 modules is what scanners expect.
_ERROR = "m"
_BORDER = 4


def qr_svg(content: str) -> bytes:
    """An SVG image of `content` that scales to its box (viewBox, no fixed size)."""
    code = segno.make(content, error=_ERROR, micro=False)
    out = io.BytesIO()
    code.save(out, kind="svg", border=_BORDER, scale=1, xmldecl=False, svgns=True, omitsize=True,
              dark="#000", light="#fff")
    return out.getvalue()
