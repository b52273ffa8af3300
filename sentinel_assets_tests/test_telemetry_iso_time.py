"""V2 timestamps: the vectorized ISO 8601 reader agrees with Python's calendar on every string."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_assets.telemetry.iso_time import epoch_microseconds

# The accepted form, as a regular expression; the calendar is Python's.
_FORM = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:[zZ]|([+-])(\d\d):?(\d\d))",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def reference(text: str | None) -> int | None:
    """Microseconds since the epoch the slow, obvious way (None: refused)."""
    match = _FORM.fullmatch(text) if text is not None else None
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    offset = timedelta(0)
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            return None
        offset = (1 if sign == "+" else -1) * timedelta(hours=int(off_h), minutes=int(off_m))
    micros = int((fraction or "0").ljust(6, "0")[:6])
    utc = local.replace(tzinfo=UTC) - offset + timedelta(microseconds=micros)
    delta = utc - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-10-31T03:15:00Z", datetime(2026, 10, 31, 3, 15, tzinfo=UTC)),
        ("2026-10-31T03:15:00z", datetime(2026, 10, 31, 3, 15, tzinfo=UTC)),
        ("2026-10-31T05:15:00.5+02:00", datetime(2026, 10, 31, 3, 15, 0, 500_000, tzinfo=UTC)),
        ("2026-10-31T05:15:00+0200", datetime(2026, 10, 31, 3, 15, tzinfo=UTC)),
        ("2026-10-31T02:45:00-00:30", datetime(2026, 10, 31, 3, 15, tzinfo=UTC)),
        ("2026-10-31T03:15:00.123456789Z", datetime(2026, 10, 31, 3, 15, 0, 123_456, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("1969-12-31T23:59:59.999999Z", datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),
    ],
)
def test_accepted_forms(text, expected):
    [micros] = epoch_microseconds(pl.Series([text])).to_list()
    assert _EPOCH + timedelta(microseconds=micros) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-10-31T03:15:00",  # a local time: no offset
        "2026-10-31 03:15:00Z",  # a space for the T
        " 2026-10-31T03:15:00Z",
        "2026-10-31T03:15:00Z ",
        "2026-10-31T3:15:00Z",
        "+12026-10-31T03:15:00Z",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2026-10-31T24:00:00Z",
        "2026-10-31T03:15:60Z",  # no leap second
        "2026-10-31T03:15:00+25:00",
        "2026-10-31T03:15:00+02",
        "2026-10-31T03:15:00.+00:00",
        "2026-10-31T03:15:00.1234567890Z",
        "0000-01-01T00:00:00Z",
        "31/10/2026 03:15",
        "",
        None,
    ],
)
def test_refused_forms(text):
    assert epoch_microseconds(pl.Series([text], dtype=pl.String)).to_list() == [None]


_datetimes = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))


@st.composite
def iso_like(draw) -> str:
    """Valid timestamps in every accepted spelling, some with one character changed."""
    moment = draw(_datetimes)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    digits = draw(st.integers(0, 10))
    if digits:
        text += "." + "".join(
            draw(st.lists(st.sampled_from("0123456789"), min_size=digits, max_size=digits))
        )
    text += draw(
        st.one_of(
            st.sampled_from(["Z", "z", "", "+00:00"]),
            st.builds(
                lambda sign, h, m, colon: f"{sign}{h:02d}{':' if colon else ''}{m:02d}",
                st.sampled_from("+-"), st.integers(0, 29), st.integers(0, 65), st.booleans(),
            ),
        )
    )  # fmt: skip
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from("0123456789-:T.Zz+ 9x")) + text[at + 1 :]
    return text


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(iso_like(), st.text(max_size=40), st.none()), max_size=30))
def test_agrees_with_the_calendar(texts):
    got = epoch_microseconds(pl.Series(texts, dtype=pl.String)).to_list()
    assert got == [reference(text) for text in texts]


def test_a_sliced_column_is_read_from_its_own_offset():
    texts = pl.Series(["junk", "2026-10-31T03:15:00Z", "2026-10-31T03:15:01Z"])
    assert epoch_microseconds(texts.slice(1)).to_list() == [
        1_793_416_500_000_000,
        1_793_416_501_000_000,
    ]
