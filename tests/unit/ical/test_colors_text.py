"""Colour names and text hygiene."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apexcal.ical.colors import nearest_css3_name, normalize_hex
from apexcal.ical.text import TRUNCATION_MARKER, clean_line, clean_text, truncate_utf8


class TestColors:
    """Nearest CSS3 names by CIE76 ΔE."""

    @pytest.mark.parametrize(
        ("hex_color", "name"),
        [
            ("#ff0000", "red"),
            ("#F00", "red"),
            ("#3B82F6", "dodgerblue"),
            ("#10B981", "mediumseagreen"),
            ("#F59E0B", "orange"),
            ("#808080", "gray"),
            ("#000000", "black"),
            ("#fffffe", "white"),
            ("3b82f6", "dodgerblue"),
        ],
    )
    def test_nearest_name(self, hex_color: str, name: str) -> None:
        """Each hex maps to its perceptually nearest CSS3 name."""
        assert nearest_css3_name(hex_color) == name

    @pytest.mark.parametrize("value", ["", "blue", "#12345", "#gggggg", "rgb(1,2,3)"])
    def test_not_a_hex_colour(self, value: str) -> None:
        """Anything but a 3/6-digit hex colour has no name and no normal form."""
        assert nearest_css3_name(value) is None
        assert normalize_hex(value) is None


class TestText:
    """Cleaning and truncation."""

    @pytest.mark.parametrize(
        ("raw", "line", "text"),
        [
            ("a\r\nb", "a b", "a\nb"),
            ("a\rb\u2028c", "a b c", "a\nb\nc"),
            ("x\x00y\x1bz\x7f", "xyz", "xyz"),
            ("tab\there", "tab here", "tab here"),
            ("  spaced   out  ", "spaced out", "spaced   out"),
            ("😀 ü 会", "😀 ü 会", "😀 ü 会"),
            (None, "", ""),
        ],
    )
    def test_clean(self, raw: str | None, line: str, text: str) -> None:
        """clean_line keeps one line; clean_text keeps newlines; both drop controls."""
        assert clean_line(raw) == line
        assert clean_text(raw) == text

    @settings(max_examples=200, deadline=None)
    @given(text=st.text(), budget=st.integers(64, 400))
    def test_truncation_fits_and_marks(self, text: str, budget: int) -> None:
        """Truncated text fits the byte budget, is valid UTF-8 and is marked when cut."""
        result = truncate_utf8(text, budget)
        assert len(result.encode("utf-8")) <= max(budget, len(text.encode("utf-8")) if result == text else budget)
        if result != text:
            assert result.endswith(TRUNCATION_MARKER)
            assert len(result.encode("utf-8")) <= budget

    @settings(max_examples=200, deadline=None)
    @given(text=st.text())
    def test_clean_line_has_no_line_breaks(self, text: str) -> None:
        """No CR or LF survives clean_line."""
        cleaned = clean_line(text)
        assert "\r" not in cleaned
        assert "\n" not in cleaned
