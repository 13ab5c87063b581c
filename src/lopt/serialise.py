"""Frozen config dataclasses to and from JSON-ready dicts.

A field whose type is a union of several dataclasses (e.g. the learned optimizer,
``OPENConfig | Optim4RLConfig``) is written with a ``"kind"`` tag naming its class,
and read back by that tag. A dataclass with a ``from_dict`` classmethod reads
itself (:class:`lopt.meta.config.TaskConfig`, tagged by its algorithm).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")

KIND = "kind"


def _dataclass_union(hint: Any) -> tuple[type, ...]:
    """The dataclasses of a union hint with more than one (else empty)."""
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        return ()
    classes = tuple(a for a in typing.get_args(hint) if dataclasses.is_dataclass(a))
    return classes if len(classes) > 1 else ()


def to_dict(config: Any) -> Any:
    """A dataclass (possibly nested, with tuples of dataclasses) as plain data."""
    if dataclasses.is_dataclass(config):
        hints = typing.get_type_hints(type(config))
        out = {}
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            out[f.name] = to_dict(value)
            if _dataclass_union(hints[f.name]) and dataclasses.is_dataclass(value):
                out[f.name] = {KIND: type(value).__name__, **out[f.name]}
        return out
    if isinstance(config, tuple | list):
        return [to_dict(x) for x in config]
    return config


def from_dict(cls: type[T], data: dict) -> T:
    """Rebuilds ``cls`` from :func:`to_dict` output; unknown keys are an error."""
    if hasattr(cls, "from_dict"):
        return cls.from_dict(data)
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
    classes = _dataclass_union(hint)
    if classes and isinstance(value, dict):
        return _tagged(classes, value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_dict(arg, value)
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return _convert(arg, value)
    return value


def _tagged(classes: tuple[type, ...], value: dict) -> Any:
    """The member of a union of dataclasses that ``value``'s tag names; untagged
    (older files), the one class whose fields are exactly ``value``'s keys."""
    by_name = {c.__name__: c for c in classes}
    data = dict(value)
    kind = data.pop(KIND, None)
    if kind is None:
        exact = [c for c in classes if {f.name for f in dataclasses.fields(c)}
                 == set(data)]  # fmt: skip
        if len(exact) != 1:
            raise ValueError(
                f"settings without a {KIND!r} tag match "
                f'{len(exact)} of {", ".join(by_name)}; add "{KIND}"'
            )
        return from_dict(exact[0], data)
    if kind not in by_name:
        raise ValueError(
            f"unknown {KIND} {kind!r}; expected one of {', '.join(by_name)}"
        )
    return from_dict(by_name[kind], data)


def changes(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Where two configs (dataclasses, or :func:`to_dict`'s plain data) differ:
    ``(dotted path, old value, new value)`` per differing setting, e.g.
    ``("es.sigma", 0.1, 0.5)``; lists of different lengths differ as a whole."""
    old, new = to_dict(old), to_dict(new)
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in [*old, *(k for k in new if k not in old)]:
            path = f"{prefix}.{key}" if prefix else str(key)
            found += changes(old.get(key), new.get(key), path)
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [
            c
            for i, (a, b) in enumerate(zip(old, new, strict=True))
            for c in changes(a, b, f"{prefix}[{i}]")
        ]
    return [] if old == new else [(prefix, old, new)]
