"""SVG drawing primitives for the report charts: text in, text out, no plotting library.

The fleet charts are a few dozen rectangles and labels; writing them as SVG takes
microseconds, where importing and rendering with matplotlib cost a report run ~0.8 s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

FONT = "DejaVu Sans, Verdana, Arial, sans-serif"
# ColorBrewer's YlOrRd, 9 classes (matplotlib's "YlOrRd" interpolates the same anchors).
YL_OR_RD: tuple[str, ...] = (
    "#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c",
    "#fc4e2a", "#e31a1c", "#bd0026", "#800026",
)  # fmt: skip


def _attributes(attributes: dict[str, object]) -> str:
    """XML attributes from keyword names (trailing `_` dropped, `_` -> `-`)."""
    return "".join(
        f" {name.rstrip('_').replace('_', '-')}={quoteattr(_number(value))}"
        for name, value in attributes.items()
        if value is not None
    )


def _number(value: object) -> str:
    """Coordinates to two decimals, so the files stay short and stable."""
    if isinstance(value, float):
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


def rect(x: float, y: float, width: float, height: float, fill: str, **extra: object) -> str:
    attributes = {"x": x, "y": y, "width": width, "height": height, "fill": fill, **extra}
    return f"<rect{_attributes(attributes)}/>"


def text(x: float, y: float, content: str, size: float = 11, **extra: object) -> str:
    """A label; `anchor` start/middle/end, vertically centred on `y` unless told otherwise."""
    attributes = {
        "x": x,
        "y": y,
        "font_size": size,
        "text_anchor": extra.pop("anchor", "start"),
        "dominant_baseline": extra.pop("baseline", "central"),
        **extra,
    }
    return f"<text{_attributes(attributes)}>{escape(content)}</text>"


def document(width: float, height: float, title: str, body: Iterable[str], defs: str = "") -> str:
    """A standalone SVG file; `title` is what screen readers and tooltips show."""
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_number(width)}" '
        f'height="{_number(height)}" viewBox="0 0 {_number(width)} {_number(height)}" '
        f"font-family={quoteattr(FONT)}>"
    )
    parts = [head, f"<title>{escape(title)}</title>"]
    if defs:
        parts.append(f"<defs>{defs}</defs>")
    parts.append(rect(0, 0, width, height, "white"))
    parts.extend(body)
    parts.append("</svg>")
    return "\n".join(parts)


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def ramp(share: float, anchors: tuple[str, ...] = YL_OR_RD) -> str:
    """The colour at `share` (0..1, clipped) along evenly spaced anchor colours."""
    position = min(max(share, 0.0), 1.0) * (len(anchors) - 1)
    low = min(int(position), len(anchors) - 2)
    weight = position - low
    a, b = _rgb(anchors[low]), _rgb(anchors[low + 1])
    red, green, blue = (round(x + (y - x) * weight) for x, y in zip(a, b, strict=True))
    return f"#{red:02x}{green:02x}{blue:02x}"


def luminance(color: str) -> float:
    """Relative luminance (WCAG), to pick black or white text on a fill."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    red, green, blue = (channel(v) for v in _rgb(color))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def text_on(fill: str) -> str:
    """Black or white, whichever reads better on `fill`."""
    return "black" if luminance(fill) > 0.179 else "white"


def vertical_gradient(identifier: str, anchors: tuple[str, ...] = YL_OR_RD) -> str:
    """A bottom-to-top gradient through the anchors, for a colour bar."""
    stops = "".join(
        f'<stop offset="{i / (len(anchors) - 1):.3f}" stop-color="{color}"/>'
        for i, color in enumerate(anchors)
    )
    return f'<linearGradient id="{identifier}" x1="0" y1="1" x2="0" y2="0">{stops}</linearGradient>'


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least `top` (steps of 1, 2 or 5 x 10^k)."""
    if top <= 0:
        return [0.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def text_width(content: str, size: float = 11) -> float:
    """An estimate (no font metrics here): about 0.6 em a character in a sans-serif face."""
    return 0.6 * size * len(content)
