"""Typed records from untrusted JSON: one strict parser for the bundle manifest, budget files and what else
the project reads back (unknown fields, missing fields and wrong types are errors naming the field).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union

from .errors import BundleError


def parse_record(tp: Any, value: Any, where: str, path: str = "") -> Any:
    """``value`` (parsed JSON) as ``tp``: dataclasses, lists, dicts, optionals, int/float/str/bool; every
    error a BundleError naming ``where`` and the field path."""
    origin = typing.get_origin(tp)
    label = path or "<root>"
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise BundleError(f"{where}: {label}: expected an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        extra = sorted(set(value) - set(fields))
        if extra:
            raise BundleError(f"{where}: {label}: unknown field(s) {', '.join(extra)}")
        kwargs = {}
        for name, f in fields.items():
            sub = f"{path}.{name}" if path else name
            if name not in value:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise BundleError(f"{where}: {sub}: missing field")
                continue
            kwargs[name] = parse_record(hints[name], value[name], where, sub)
        return tp(**kwargs)
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return parse_record(inner, value, where, path)
    if origin is list:
        if not isinstance(value, list):
            raise BundleError(f"{where}: {label}: expected a list, got {type(value).__name__}")
        (inner,) = typing.get_args(tp)
        return [parse_record(inner, v, where, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise BundleError(f"{where}: {label}: expected an object, got {type(value).__name__}")
        key_tp, val_tp = typing.get_args(tp)
        return {k: parse_record(val_tp, v, where, f"{path}[{k!r}]") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _wrong(where, label, "a number", value)
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _wrong(where, label, "an integer",
                                                                                          value)
    if tp is str:
        return value if isinstance(value, str) else _wrong(where, label, "a string", value)
    if tp is bool:
        return value if isinstance(value, bool) else _wrong(where, label, "true or false", value)
    raise TypeError(f"manifest schema uses an unsupported type {tp!r}")  # a bug, not a user error


def _wrong(where: str, label: str, expected: str, value: Any) -> Any:
    raise BundleError(f"{where}: {label}: expected {expected}, got {type(value).__name__} {value!r:.40}")
