"""The SVG primitives behind the report charts: valid XML, honest axes, readable colours."""

import math
from xml.etree import ElementTree

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sentinel_assets import svg


def test_a_document_is_well_formed_and_escapes_its_text():
    document = svg.document(
        120,
        40,
        "rates <a & b>",
        [svg.text(10, 20, 'eu-west & "x" <1>'), svg.rect(0, 0, 5, 5, "red")],
    )
    root = ElementTree.fromstring(document)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts == ['eu-west & "x" <1>']
    assert root.find("{http://www.w3.org/2000/svg}title").text == "rates <a & b>"
    assert root.get("viewBox") == "0 0 120 40"


def test_attribute_names_and_numbers_are_written_the_svg_way():
    element = ElementTree.fromstring(svg.text(1.0, 2.5, "x", font_weight="bold", anchor="end"))
    assert element.get("font-weight") == "bold" and element.get("text-anchor") == "end"
    assert (element.get("x"), element.get("y")) == ("1", "2.5")


def test_the_ramp_runs_from_its_first_to_its_last_colour_and_clips():
    assert svg.ramp(0.0) == svg.YL_OR_RD[0]
    assert svg.ramp(1.0) == svg.YL_OR_RD[-1]
    assert svg.ramp(-3) == svg.YL_OR_RD[0] and svg.ramp(7) == svg.YL_OR_RD[-1]


@given(st.floats(0, 1), st.floats(0, 1))
def test_a_higher_share_is_never_lighter(a, b):
    low, high = sorted((a, b))
    assert svg.luminance(svg.ramp(high)) <= svg.luminance(svg.ramp(low)) + 1e-9


def test_text_goes_white_on_dark_fills_and_black_on_light_ones():
    assert svg.text_on(svg.YL_OR_RD[-1]) == "white"
    assert svg.text_on(svg.YL_OR_RD[0]) == "black"


@given(st.floats(min_value=1e-6, max_value=1e12, allow_nan=False))
def test_ticks_start_at_zero_reach_the_top_and_step_evenly_by_1_2_or_5(top):
    ticks = svg.nice_ticks(top)
    step = ticks[1]
    assert ticks[0] == 0 and ticks[-1] >= top * (1 - 1e-9) and ticks[-2] < top
    assert ticks == pytest.approx([i * step for i in range(len(ticks))])
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    assert min(abs(mantissa - m) for m in (1, 2, 5, 10)) < 1e-6
    assert 2 <= len(ticks) <= 11


def test_no_fleet_gives_a_single_zero_tick():
    assert svg.nice_ticks(0) == [0.0]
    assert svg.nice_ticks(100_000) == [0, 20_000, 40_000, 60_000, 80_000, 100_000]
