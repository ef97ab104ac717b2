"""Typed records from untrusted JSON: one strict parser for the bundle manifest, the arch spec, budget
files, bench reports and what else the project reads back (missing fields and wrong types are errors naming
the field; unknown fields too, unless the record is declared open with ``open_record``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from typing import Any, Union

from .errors import BundleError

_OPEN = "__record_open__"

#: Integers a manifest or budget file may hold (int64 arrays take them; larger ones are tampering).
INT_LIMIT = 1 << 62


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    value = int(text)  # more than 4300 digits: ValueError
    if abs(value) >= INT_LIMIT:
        raise ValueError(f"integer {text[:40]}... is out of range")
    return value


def strict_json_loads(text: str | bytes):
    """``json.loads`` for untrusted files: NaN/Infinity literals, numbers that overflow to inf and integers of
    2**62 or more are refused; too deep nesting and bytes that are not UTF-8 too.  Every problem is a
    ``ValueError``."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")  # JSON files are UTF-8 (json.loads would also guess UTF-16/32)
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def open_record(cls: type) -> type:
    """Declare the dataclass ``cls`` open: ``parse_record`` ignores the fields it does not declare (for formats
    whose writers may add fields readers do not rely on); declared fields stay required and typed."""
    setattr(cls, _OPEN, True)
    return cls


def parse_record(tp: Any, value: Any, where: str, path: str = "", *,
                 error: type[Exception] = BundleError) -> Any:
    """``value`` (parsed JSON) as ``tp``: dataclasses (closed, or open with ``open_record``), lists, dicts with
    string keys, ``tuple[X, ...]`` (from a JSON list), unions (``X | None`` and others), ``Any``, ``None``,
    int/float/str/bool.

    Every error is an ``error`` (default BundleError) reading ``"<where>: <path>: <problem>"``; an empty
    ``where`` or path (the root) is left out (``path`` may name the root, e.g. ``report``)."""
    return _Parser(where, error).parse(tp, value, path)


@functools.cache
def _hints(tp: type) -> dict[str, Any]:
    return typing.get_type_hints(tp)


_NAMES = {float: "a number", int: "an integer", str: "a string", bool: "true or false", type(None): "null"}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if tp in _NAMES:
        return _NAMES[tp]
    if dataclasses.is_dataclass(tp) or origin is dict:
        return "an object"
    if origin in (list, tuple):
        return "a list"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(o) for o in typing.get_args(tp))
    return "any value"


class _Parser:
    def __init__(self, where: str, error: type[Exception]):
        self.where, self.error = where, error

    def fail(self, path: str, message: str) -> typing.NoReturn:
        named = [part for part in (self.where, path) if part] or ["<root>"]
        raise self.error(": ".join([*named, message]))

    def wrong(self, path: str, expected: str, value: Any) -> typing.NoReturn:
        self.fail(path, f"expected {expected}, got {type(value).__name__} {value!r:.40}")

    def parse(self, tp: Any, value: Any, path: str) -> Any:
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp):
            return self.record(tp, value, path)
        if origin in (Union, types.UnionType):
            return self.union(tp, value, path)
        if origin is list:
            if not isinstance(value, list):
                self.fail(path, f"expected a list, got {type(value).__name__}")
            (inner,) = typing.get_args(tp)
            if inner is Any:  # nothing to check per item
                return list(value)
            return [self.parse(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
        if origin is tuple:
            args = typing.get_args(tp)
            if len(args) != 2 or args[1] is not Ellipsis:
                raise TypeError(f"record schema uses an unsupported tuple {tp!r}")  # a bug, not a user error
            if not isinstance(value, (list, tuple)):
                self.fail(path, f"expected a list, got {type(value).__name__}")
            return tuple(self.parse(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if origin is dict:
            if not isinstance(value, dict):
                self.fail(path, f"expected an object, got {type(value).__name__}")
            key_tp, val_tp = typing.get_args(tp)
            if key_tp not in (str, Any):
                raise TypeError(f"record schema uses unsupported dict keys {key_tp!r}")  # a bug, not a user error
            for k in value:
                if key_tp is str and not isinstance(k, str):
                    self.fail(path, f"expected string keys, got {type(k).__name__} {k!r:.40}")
            if val_tp is Any:
                return dict(value)
            return {k: self.parse(val_tp, v, f"{path}[{k!r}]") for k, v in value.items()}
        if tp is Any:
            return value
        if tp is float:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                self.wrong(path, "a number", value)
            try:
                return float(value)
            except OverflowError:  # an integer beyond float range
                self.fail(path, f"expected a number, got an integer too large for a float ({value!r:.40})")
        if tp is int:
            return value if isinstance(value, int) and not isinstance(value, bool) else self.wrong(
                path, "an integer", value)
        if tp is str:
            return value if isinstance(value, str) else self.wrong(path, "a string", value)
        if tp is bool:
            return value if isinstance(value, bool) else self.wrong(path, "true or false", value)
        if tp is type(None):
            return None if value is None else self.wrong(path, "null", value)
        raise TypeError(f"record schema uses an unsupported type {tp!r}")  # a bug, not a user error

    def record(self, tp: type, value: Any, path: str) -> Any:
        if not isinstance(value, dict):
            self.fail(path, f"expected an object, got {type(value).__name__}")
        hints = _hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        extra = sorted((k for k in value if k not in fields), key=str)
        if extra and not getattr(tp, _OPEN, False):
            self.fail(path, f"unknown field(s) {', '.join(map(str, extra))}")
        kwargs = {}
        for name, f in fields.items():
            sub = f"{path}.{name}" if path else name
            if name not in value:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    self.fail(sub, "missing field")
                continue
            kwargs[name] = self.parse(hints[name], value[name], sub)
        return tp(**kwargs)

    def union(self, tp: Any, value: Any, path: str) -> Any:
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        if len(inner) == 1:  # X | None: X's own error
            return self.parse(inner[0], value, path)
        for option in inner:
            try:
                return self.parse(option, value, path)
            except self.error:
                continue
        self.wrong(path, _describe(tp), value)
