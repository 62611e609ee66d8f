"""Reading and writing files, the one home of each: strict JSON (`read_json`, `strict_json`, `dumps_json`),
atomic writes (`write_text_atomic`, `write_json`: a temporary name, then a rename, so a reader never sees a
half-written file), and `first_missing` (what creating a folder creates, for a failed run to remove).

Every JSON file vdit writes goes through `dumps_json`: strict JSON (RFC 8259 has no NaN / Infinity, which
`json.dumps` writes by default and other readers reject). This module sits below every package (it imports
only `vdit.errors`), so models, data, evaluation and the drivers share it.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from vdit.errors import DataError


def read_json(path: str | Path, what: str = "json file") -> Any:
    """json.load with a DataError naming the file (as `what`, e.g. "COCO ground truth") when it is
    missing, a folder, unreadable or not valid json/utf-8."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{what} {path} is a directory, expected a JSON file")
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{what} {path}: cannot parse json ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{what} {path}: cannot read ({exc})") from exc


def strict_json(obj: Any, nonfinite: str = "null", where: str = "") -> Any:
    """`obj` with every float finite: NaN / +-Inf become None (`nonfinite="null"`, for reports whose
    readers treat a missing figure as missing) or raise ValueError naming the key (`"error"`, for files
    that must round-trip exactly, e.g. checkpoints). numpy scalars become Python numbers, tuples lists."""
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if math.isfinite(value):
            return value
        if nonfinite == "null":
            return None
        raise ValueError(f"{where or 'value'} is {value}, which JSON cannot represent")
    if isinstance(obj, dict):
        return {k: strict_json(v, nonfinite, f"{where}.{k}" if where else str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v, nonfinite, f"{where}[{i}]") for i, v in enumerate(obj)]
    return obj


def dumps_json(obj: Any, nonfinite: str = "null", **kwargs: Any) -> str:
    """json.dumps writing strict JSON only (`allow_nan=False` after `strict_json`)."""
    return json.dumps(strict_json(obj, nonfinite), allow_nan=False, **kwargs)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (utf-8) to `path` through a temporary name beside it and a rename; creates the parent
    folders. Returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, obj: Any, *, nonfinite: str = "null", indent: int | None = 2,
               ensure_ascii: bool = True) -> Path:
    """`obj` as strict JSON (`dumps_json`; `nonfinite="error"` for files that must load back exactly),
    written atomically (`write_text_atomic`) with a final newline. Returns `path`."""
    return write_text_atomic(path, dumps_json(obj, nonfinite, indent=indent, ensure_ascii=ensure_ascii) + "\n")


def first_missing(path: str | Path) -> Path | None:
    """The topmost folder of `path` that does not exist yet (what `mkdir(parents=True)` would create and a
    failed run must remove again), or None when `path` exists."""
    top = Path(path).expanduser().absolute()
    if top.exists():
        return None
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    return top


__all__ = ["read_json", "strict_json", "dumps_json", "write_text_atomic", "write_json", "first_missing"]
