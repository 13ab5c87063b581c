"""Frozen config dataclasses to and from JSON-ready dicts."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(config: Any) -> Any:
    """A dataclass (possibly nested, with tuples of dataclasses) as plain data."""
    if dataclasses.is_dataclass(config):
        return {
            f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)
        }
    if isinstance(config, tuple | list):
        return [to_dict(x) for x in config]
    return config


def from_dict(cls: type[T], data: dict) -> T:
    """Rebuilds ``cls`` from :func:`to_dict` output; unknown keys are an error."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} settings: {sorted(unknown)}")
    return cls(**{k: _convert(hints[k], v) for k, v in data.items()})


def _convert(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_dict(hint, value)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_convert(item, v) for v in value)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in typing.get_args(hint):
            if arg is type(None) and value is None:
                return None
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                # A union of dataclasses: the first whose fields the dict fits.
                try:
                    return from_dict(arg, value)
                except (TypeError, ValueError) as err:
                    errors.append(f"{arg.__name__}: {err}")
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return _convert(arg, value)
        if errors:
            raise ValueError(f"settings match none of {'; '.join(errors)}")
    return value
