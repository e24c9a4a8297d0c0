"""Nearest CSS3 colour name for a hex colour (RFC 7986 ``COLOR`` wants a name).

The distance is CIE76: Euclidean distance in CIELAB (D65 white point, sRGB
companding).  Unlike plain RGB distance it follows perceived difference well
enough to pick the name a person would (e.g. ``#3B82F6`` → ``dodgerblue``).
Names come from webcolors' CSS3 list; where two names share one value
(``gray``/``grey``, ``aqua``/``cyan``…) the alphabetically first wins, so the
result is deterministic.
"""

from __future__ import annotations

import re
from functools import cache

import webcolors

_HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")

Lab = tuple[float, float, float]


def normalize_hex(value: str | None) -> str | None:
    """``#rrggbb`` in lowercase for a 3- or 6-digit hex colour (``#`` optional), else ``None``."""
    if not value:
        return None
    match = _HEX.match(value.strip())
    if match is None:
        return None
    digits = match.group(1)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits.lower()


def _linear(channel: int) -> float:
    c = channel / 255.0
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _f(t: float) -> float:
    return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29


def rgb_to_lab(red: int, green: int, blue: int) -> Lab:
    """CIELAB coordinates (D65) of an 8-bit sRGB colour."""
    r, g, b = _linear(red), _linear(green), _linear(blue)
    x = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047
    y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b
    z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883
    fx, fy, fz = _f(x), _f(y), _f(z)
    return (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))


@cache
def _palette() -> tuple[tuple[str, Lab], ...]:
    by_value: dict[str, str] = {}
    for name in sorted(webcolors.names(webcolors.CSS3)):
        by_value.setdefault(webcolors.name_to_hex(name, webcolors.CSS3), name)
    return tuple(
        (name, rgb_to_lab(*webcolors.hex_to_rgb(value))) for value, name in sorted(by_value.items())
    )


def delta_e76(a: Lab, b: Lab) -> float:
    """CIE76 colour difference between two CIELAB colours."""
    return float(((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2) ** 0.5)


@cache
def nearest_css3_name(hex_color: str) -> str | None:
    """The CSS3 colour name nearest (CIE76 ΔE) to ``hex_color``; ``None`` when it is not a hex colour."""
    normal = normalize_hex(hex_color)
    if normal is None:
        return None
    target = rgb_to_lab(*webcolors.hex_to_rgb(normal))
    best_name, best_distance = "", float("inf")
    for name, lab in _palette():
        distance = delta_e76(target, lab)
        if distance < best_distance:
            best_name, best_distance = name, distance
    return best_name
