"""Durations in the config: "30s", "5m", "1h30m", "2d" or whole seconds."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apexcal.config import format_duration, parse_duration


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("30s", timedelta(seconds=30)),
            ("5m", timedelta(minutes=5)),
            ("1h", timedelta(hours=1)),
            ("1h30m", timedelta(hours=1, minutes=30)),
            ("2d", timedelta(days=2)),
            ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
            ("0s", timedelta(0)),
            ("90m", timedelta(minutes=90)),
            (" 5M ", timedelta(minutes=5)),
            ("300", timedelta(seconds=300)),
            (300, timedelta(seconds=300)),
            (0, timedelta(0)),
            (timedelta(minutes=2), timedelta(minutes=2)),
        ],
    )
    def test_accepts_units_and_whole_seconds(self, text: object, expected: timedelta) -> None:
        """Unit strings, digit strings, integers and timedeltas all parse to the same timedelta."""
        assert parse_duration(text) == expected

    @pytest.mark.parametrize(
        "text",
        ["", "5 minutes", "m5", "1.5h", "5x", "-5m", "h", "1m1h", "5m5m", True, -3, 2.5, None, []],
    )
    def test_rejects_anything_else_with_a_hint(self, text: object) -> None:
        """Wrong order, fractions, negatives, booleans and other types are refused with the accepted forms named."""
        with pytest.raises(ValueError, match=r"duration|negative"):
            parse_duration(text)


class TestFormatDuration:
    def test_formats_compound_durations_canonically(self) -> None:
        """A timedelta is written with the largest units first and no zero parts."""
        assert format_duration(timedelta(days=1, minutes=30)) == "1d30m"
        assert format_duration(timedelta(0)) == "0s"
        assert format_duration(timedelta(hours=1, seconds=5)) == "1h5s"

    @given(st.integers(min_value=0, max_value=10**9))
    def test_round_trips_every_whole_second_count(self, seconds: int) -> None:
        """Formatting then parsing gives back the same duration."""
        value = timedelta(seconds=seconds)
        assert parse_duration(format_duration(value)) == value

    @given(
        st.tuples(*(st.one_of(st.none(), st.integers(0, 10_000)) for _ in range(4))).filter(
            lambda parts: any(p is not None for p in parts)
        )
    )
    def test_parses_any_ordered_combination_of_units(
        self, parts: tuple[int | None, int | None, int | None, int | None]
    ) -> None:
        """Any ordered d/h/m/s combination parses to the sum of its parts and re-formats canonically."""
        text = "".join(f"{n}{u}" for n, u in zip(parts, "dhms", strict=True) if n is not None)
        days, hours, minutes, seconds = (p or 0 for p in parts)
        expected = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        assert parse_duration(text) == expected
        assert parse_duration(format_duration(expected)) == expected
