"""The one parser per input kind: any text gives a value or InvalidInput, nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.http import body
from gateway.http.body import MAX_DEPTH, parse_json_object
from gateway.http.problems import Problem
from provisioning import ids, validation
from provisioning.errors import InvalidInput
from provisioning.tokens import TOKEN_ID

DIGITS = st.text(alphabet=st.characters(categories=["Nd", "No"]), max_size=30)


@given(st.one_of(st.text(max_size=40), DIGITS))
def test_whole_number_is_ascii_and_bounded(text: str) -> None:
    try:
        value = validation.whole_number("n", text, minimum=0, maximum=2**62)
    except InvalidInput as error:
        assert error.field == "n"
        return
    assert text.isascii() and str(value) == text.lstrip("0").rjust(1, "0")
    assert 0 <= value <= 2**62


@given(st.integers(min_value=-(10**30), max_value=10**30))
def test_whole_number_bounds(value: int) -> None:
    text = str(value)
    if 1 <= value <= 500:
        assert validation.whole_number("limit", text, minimum=1, maximum=500) == value
    else:
        with pytest.raises(InvalidInput):
            validation.whole_number("limit", text, minimum=1, maximum=500)


@given(st.text(max_size=60))
def test_timestamp_never_fails_otherwise(text: str) -> None:
    try:
        parsed = validation.timestamp("at", text)
    except InvalidInput as error:
        assert error.field == "at"
        return
    assert validation.EARLIEST <= parsed <= validation.LATEST and parsed.tzinfo is UTC


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59),
)
def test_timestamp_round_trips_within_the_range(moment: datetime, offset_minutes: int) -> None:
    moment = moment.replace(microsecond=0)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    try:
        local = moment + timedelta(minutes=offset_minutes)
    except OverflowError:
        return
    text = f"{local:%Y-%m-%dT%H:%M:%S}{sign}{hours:02d}:{minutes:02d}"
    if len(f"{local:%Y}") != 4:
        return
    in_range = validation.EARLIEST <= moment <= validation.LATEST
    try:
        parsed = validation.timestamp("at", text)
    except InvalidInput:
        assert not in_range, text
        return
    assert in_range and parsed == moment, text
    assert validation.timestamp("at", validation.rfc3339(parsed)) == parsed


@given(st.text(max_size=50))
def test_identifiers_only_in_their_format(text: str) -> None:
    for fmt in (ids.UUID, TOKEN_ID):
        try:
            validation.identifier("id", text, fmt)
        except InvalidInput:
            continue
        assert text.isascii() and text.isprintable() and "\x00" not in text
        assert len(text) <= fmt.max_len


def test_new_ids_are_ids() -> None:
    assert all(ids.is_id(ids.new_id()) for _ in range(100))


@given(st.integers(min_value=0, max_value=3000), st.sampled_from(["[", '{"k":']))
def test_nesting_is_refused_before_decoding(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    raw = ('{"field": ' + opener * depth + "1" + closer * depth + "}").encode()
    try:
        doc = parse_json_object(raw, allowed={"field"})
    except Problem as problem:
        assert problem.status == 400
        assert depth + 1 > MAX_DEPTH and problem.extra["field"] == "field"
        return
    assert depth + 1 <= MAX_DEPTH and "field" in doc


@given(
    st.recursive(
        st.none() | st.integers() | st.text(max_size=5),
        lambda kids: (
            st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
        ),
        max_leaves=30,
    )
)
def test_depth_check_agrees_with_the_decoder(value: object) -> None:
    """Brackets and quotes inside strings never count; the check matches the real depth."""

    def depth(v: object) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    raw = json.dumps({"field": value}).encode()
    try:
        parse_json_object(raw, allowed={"field"})
    except Problem:
        assert 1 + depth(value) > MAX_DEPTH
        return
    assert 1 + depth(value) <= MAX_DEPTH


# Text made of what the depth scan looks at (quotes, escapes, brackets), valid or not.
structure_text = st.text(alphabet=st.sampled_from(list('[]{}"\\:,a1 ')), max_size=80)


@settings(max_examples=500)
@given(structure_text | st.builds(lambda d, s: "[" * d + s + "]" * d,
                                  st.integers(0, MAX_DEPTH + 2), structure_text))
def test_the_depth_screen_decides_as_the_full_scan(text: str) -> None:
    """The C screen in front of the scan never changes the answer, on any text."""
    assert body._too_deep(text) == body._deep_field(text)
