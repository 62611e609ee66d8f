"""Configs to and from dicts and YAML files, and dotted `key=value` overrides (`--set`); unknown keys are an
error naming the closest known key."""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

import yaml

from vdit.errors import ConfigError


def to_dict(cfg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def _unknown_key(path: str, key: str, known: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {path}{close[0]!r}?" if close else f"; known keys: {sorted(known)}"
    return ConfigError(f"unknown config key {path}{key!r}{hint}")


def from_dict(cls: type, data: dict[str, Any], _path: str = "") -> Any:
    """Build dataclass `cls` from a (possibly partial) dict; unknown keys are an error naming the
    closest known key."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section {_path or '<root>'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise _unknown_key(_path, key, list(fields))
        ftype = _field_type(cls, key)
        if dataclasses.is_dataclass(ftype):
            kwargs[key] = from_dict(ftype, value, f"{_path}{key}.")
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _field_type(cls: type, name: str) -> Any:
    import typing

    return typing.get_type_hints(cls)[name]


def save_yaml(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def load_yaml(cls: type, path: str | Path) -> Any:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    return from_dict(cls, data or {})


def _parse_value(text: str, current: Any) -> Any:
    value = yaml.safe_load(text)
    if isinstance(value, str) and isinstance(current, (int, float)) and not isinstance(current, bool):
        try:  # YAML 1.1 reads "5e-5" (no dot) as a string; users mean the number
            value = float(text)
        except ValueError:
            pass
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ConfigError(f"expected true/false, got {text!r}")
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if current is not None and not isinstance(value, type(current)) and not (
        isinstance(current, float) and isinstance(value, (int, float))
    ):
        raise ConfigError(f"expected a {type(current).__name__}, got {text!r}")
    return value


def apply_overrides(cfg: Any, overrides: list[str]) -> Any:
    """Apply `a.b.c=value` strings (values parsed as YAML) to a config, in place; returns it."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        dotted, text = item.split("=", 1)
        parts = dotted.strip().split(".")
        node, path = cfg, ""
        for part in parts[:-1]:
            names = [f.name for f in dataclasses.fields(node)]
            if part not in names or not dataclasses.is_dataclass(getattr(node, part)):
                raise _unknown_key(path, part, names)
            node, path = getattr(node, part), f"{path}{part}."
        names = [f.name for f in dataclasses.fields(node)]
        leaf = parts[-1]
        if leaf not in names or dataclasses.is_dataclass(getattr(node, leaf)):
            raise _unknown_key(path, leaf, names)
        try:
            setattr(node, leaf, _parse_value(text, getattr(node, leaf)))
        except ConfigError as exc:
            raise ConfigError(f"override {dotted}: {exc}") from None
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg
