"""``records.parse_record``, the one typed-record parser (manifest, budget files, bench reports): what it accepts,
and that every other input is the caller's error type naming the field path."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsnet_export.errors import BundleError, DsnetError
from dsnet_export.records import open_record, parse_record


@dataclass(frozen=True)
class Point:
    x: float
    y: float


@open_record
@dataclass(frozen=True)
class OpenPoint:
    x: float
    label: str | None = None


@dataclass(frozen=True)
class Shape:
    name: str
    points: list[Point]
    tags: dict[str, int]
    id: int | str
    note: str | None
    meta: Any
    extra: OpenPoint | None = None
    done: bool = False
    parts: list[int] = field(default_factory=list)


class MyError(DsnetError, ValueError):
    pass


GOOD = {"name": "square", "points": [{"x": 0, "y": 1.5}], "tags": {"a": 1}, "id": "s1", "note": None,
        "meta": {"free": [1, None]}}


def test_a_valid_record_parses_with_defaults_and_floats_from_integers():
    shape = parse_record(Shape, GOOD, "f.json")
    assert shape.points == [Point(0.0, 1.5)] and isinstance(shape.points[0].x, float)
    assert shape.tags == {"a": 1} and shape.id == "s1" and shape.note is None and shape.meta == {"free": [1, None]}
    assert shape.extra is None and shape.done is False and shape.parts == []


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("name"), "f.json: name: missing field"),
    (lambda d: d.update(surprise=1, other=2), "f.json: unknown field(s) other, surprise"),
    (lambda d: d.update(points=[{"x": 1, "y": "2"}]), "f.json: points[0].y: expected a number, got str '2'"),
    (lambda d: d.update(points=[{"x": 1, "y": True}]), "f.json: points[0].y: expected a number, got bool True"),
    (lambda d: d.update(points=[{"x": 1, "y": 2, "z": 3}]), "f.json: points[0]: unknown field(s) z"),
    (lambda d: d.update(points={}), "f.json: points: expected a list, got dict"),
    (lambda d: d.update(tags={"a": 1.0}), "f.json: tags['a']: expected an integer, got float 1.0"),
    (lambda d: d.update(tags={1: 1}), "f.json: tags: expected string keys, got int 1"),
    (lambda d: d.update(id=[1]), "f.json: id: expected an integer or a string, got list [1]"),
    (lambda d: d.update(id=None), "f.json: id: expected an integer or a string, got NoneType None"),
    (lambda d: d.update(note=3), "f.json: note: expected a string, got int 3"),
    (lambda d: d.update(done="yes"), "f.json: done: expected true or false, got str 'yes'"),
    (lambda d: d.update(extra={}), "f.json: extra.x: missing field"),
    (lambda d: d.update(points=[{"x": 10 ** 400, "y": 0}]),
     "f.json: points[0].x: expected a number, got an integer too large for a float"),
])
def test_every_error_names_the_field_path(change, message):
    data = {**GOOD, "points": list(GOOD["points"])}
    change(data)
    with pytest.raises(BundleError) as err:
        parse_record(Shape, data, "f.json")
    assert str(err.value).startswith(message)


def test_unions_take_any_of_their_types():
    assert parse_record(Shape, {**GOOD, "id": 7}, "f").id == 7
    assert parse_record(int | str, "a", "f") == "a"
    assert parse_record(int | None, None, "f") is None
    assert parse_record(type(None), None, "f") is None
    with pytest.raises(BundleError, match="f: expected an integer, got str"):  # X | None: X's own message
        parse_record(int | None, "a", "f")


def test_open_records_ignore_unknown_fields_but_keep_the_declared_ones_strict():
    assert parse_record(OpenPoint, {"x": 1, "anything": [None], "7": {}}, "f") == OpenPoint(1.0)
    assert parse_record(Shape, {**GOOD, "extra": {"x": 2, "label": "a", "more": 1}}, "f").extra == OpenPoint(2.0, "a")
    with pytest.raises(BundleError, match=r"^f: extra\.label: expected a string, got int"):
        parse_record(Shape, {**GOOD, "extra": {"x": 2, "label": 1}}, "f")


def test_an_empty_where_and_a_root_path_name_the_path_alone_in_the_callers_error_type():
    with pytest.raises(MyError) as err:
        parse_record(Shape, {**GOOD, "points": [{"x": "0", "y": 0}]}, "", "shape", error=MyError)
    assert str(err.value) == "shape.points[0].x: expected a number, got str '0'"
    with pytest.raises(MyError, match=r"^shape: expected an object, got list$"):
        parse_record(Shape, [], "", "shape", error=MyError)
    with pytest.raises(MyError, match=r"^shape\.id: expected an integer or a string"):  # unions catch MyError
        parse_record(Shape, {**GOOD, "id": 1.5}, "", "shape", error=MyError)


def test_a_schema_bug_is_a_type_error_not_a_user_error():
    with pytest.raises(TypeError, match="unsupported type"):
        parse_record(bytes, b"", "f")
    with pytest.raises(TypeError, match="unsupported dict keys"):
        parse_record(dict[int, int], {}, "f")


def test_a_budget_with_an_integer_beyond_float_range_is_a_bundle_error():
    from dsnet_export.runtime.budget import parse_budget

    budget = {"version": 1, "manifest_sha256": "ab" * 32, "target_macs": 1_000_000, "achieved_macs": 10 ** 400,
              "unbiased_macs": 1.2e6, "bias": [0.0, -1.0], "histogram": [3, 3], "samples": 6, "data": "val/"}
    with pytest.raises(BundleError, match="achieved_macs: expected a number, got an integer too large"):
        parse_budget(budget)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from([10 ** 400, math.inf, "x"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)
FIELDS = st.sampled_from(sorted(GOOD) + ["extra", "done", "parts", "other"])


@settings(max_examples=int(os.environ.get("DSNET_HYPOTHESIS_EXAMPLES", "200")), deadline=None)
@given(value=JSON | st.dictionaries(FIELDS, JSON, max_size=8) | st.fixed_dictionaries(
    {}, optional={k: JSON for k in (*GOOD, "extra", "parts")}).map(lambda d: {**GOOD, **d}))
def test_any_json_is_a_record_or_the_callers_error(value):
    try:
        shape = parse_record(Shape, value, "f.json", error=MyError)
    except MyError as exc:
        assert str(exc).startswith("f.json: ")
    else:
        assert isinstance(shape, Shape) and all(isinstance(p, Point) for p in shape.points)
