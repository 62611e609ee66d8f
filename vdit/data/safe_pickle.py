"""Reading (and writing) pickles that may only hold plain data.

The REFER annotation files (`refs(unc).p`, `refs(umd).p`, ...) are pickles written by Python 2. A
pickle can run arbitrary code at load time through global lookups (`find_class`), so `load_plain_pickle`
refuses every global except the handful needed to rebuild plain containers: nothing outside
dict / list / tuple / set / frozenset / int / float / complex / str / bytes / bytearray / bool / None can
come out of it. Anything else (a class instance, a function, a persistent id, a truncated file) raises
`DataError` naming the file.

`dump_py2_plain` writes plain data the way Python 2's cPickle protocol 2 did, including Python 2 byte
strings (`str`) as BINSTRING opcodes. Tests use it to build REFER files in the real on-disk form;
Python 3's own pickler cannot produce those opcodes.
"""
from __future__ import annotations

import codecs
import io
import pickle
import struct
from pathlib import Path
from typing import Any, BinaryIO, Callable

from vdit.errors import DataError

# Encodings `_codecs.encode` may be asked for: Python 3 pickles `bytes` under protocol < 3 as
# `_codecs.encode(text, "latin1")`; any other codec (zlib, rot13...) has no business in plain data.
_LATIN1_NAMES = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"})


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding.lower() not in _LATIN1_NAMES:
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} is not allowed")
    return codecs.encode(text, "latin1")


def _plain_bytearray(*args: Any) -> bytearray:
    return bytearray(*args)


# The only globals a plain-data pickle needs (protocols 0-3 have no opcode for these types).
_ALLOWED_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {}
for _module in ("builtins", "__builtin__"):
    _ALLOWED_GLOBALS[(_module, "set")] = set
    _ALLOWED_GLOBALS[(_module, "frozenset")] = frozenset
    _ALLOWED_GLOBALS[(_module, "bytearray")] = _plain_bytearray
    _ALLOWED_GLOBALS[(_module, "complex")] = complex
_ALLOWED_GLOBALS[("_codecs", "encode")] = _latin1_encode


class _PlainUnpickler(pickle.Unpickler):
    """An Unpickler whose global lookups are limited to `_ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"global '{module}.{name}' is not allowed (only plain containers and scalars)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def loads_plain_pickle(data: bytes, *, encoding: str = "latin1", source: str = "<bytes>") -> Any:
    """Unpickle `data`, allowing plain containers and scalars only.

    `encoding` decodes Python 2 byte strings (`str` in Python 2): "latin1" maps every byte to one
    character (never fails); "bytes" keeps them as `bytes` (see `decode_py2_strings`).
    Raises DataError mentioning `source` on any disallowed or malformed content.
    """
    try:
        return _PlainUnpickler(io.BytesIO(data), encoding=encoding).load()
    except RecursionError as exc:
        raise DataError(f"{source}: pickle is nested too deeply ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - untrusted input: every failure becomes a DataError
        raise DataError(f"{source}: not a plain-data pickle ({type(exc).__name__}: {exc})") from None


def load_plain_pickle(path: str | Path, *, encoding: str = "latin1") -> Any:
    """Read a pickle file that may only contain plain data; DataError naming `path` otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read pickle ({exc.strerror or exc})") from None
    return loads_plain_pickle(data, encoding=encoding, source=str(path))


def decode_py2_strings(obj: Any, *, fallback: str = "latin1") -> Any:
    """Turn every `bytes` inside plain data into `str`: UTF-8 first, then `fallback`.

    Python 2 `str` values carry no encoding. Loading them with encoding="bytes" and decoding here keeps
    UTF-8 text intact (latin-1 decoding alone would turn "café" into "cafÃ©").
    """
    if isinstance(obj, bytes):
        try:
            return obj.decode("utf-8")
        except UnicodeDecodeError:
            return obj.decode(fallback)
    if isinstance(obj, dict):
        return {decode_py2_strings(k, fallback=fallback): decode_py2_strings(v, fallback=fallback)
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_py2_strings(v, fallback=fallback) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode_py2_strings(v, fallback=fallback) for v in obj)
    if isinstance(obj, (set, frozenset)):
        return type(obj)(decode_py2_strings(v, fallback=fallback) for v in obj)
    return obj


# ---------------------------------------------------------------------------------------------------
# Python-2-style writer (protocol 2 opcodes, no memo: plain trees have no shared references to keep).

_PROTO, _STOP = b"\x80", b"."
_NONE, _NEWTRUE, _NEWFALSE = b"N", b"\x88", b"\x89"
_BININT1, _BININT2, _BININT, _LONG1 = b"K", b"M", b"J", b"\x8a"
_BINFLOAT = b"G"
_SHORT_BINSTRING, _BINSTRING, _BINUNICODE = b"U", b"T", b"X"
_EMPTY_DICT, _EMPTY_LIST, _EMPTY_TUPLE = b"}", b"]", b")"
_MARK, _SETITEMS, _APPENDS, _TUPLE = b"(", b"u", b"e", b"t"
_TUPLE_N = {1: b"\x85", 2: b"\x86", 3: b"\x87"}
_BATCH = 1000  # cPickle's batch size for APPENDS / SETITEMS
_SHORT_LIMIT = 256  # SHORT_BINSTRING holds a one-byte length


def _write_int(out: BinaryIO, value: int) -> None:
    if 0 <= value < 0x100:
        out.write(_BININT1 + struct.pack("<B", value))
    elif 0 <= value < 0x10000:
        out.write(_BININT2 + struct.pack("<H", value))
    elif -0x80000000 <= value < 0x80000000:
        out.write(_BININT + struct.pack("<i", value))
    else:
        raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        out.write(_LONG1 + struct.pack("<B", len(raw)) + raw)


def _write_py2_bytes(out: BinaryIO, raw: bytes) -> None:
    if len(raw) < _SHORT_LIMIT:
        out.write(_SHORT_BINSTRING + struct.pack("<B", len(raw)) + raw)
    else:
        out.write(_BINSTRING + struct.pack("<i", len(raw)) + raw)


def _write_obj(out: BinaryIO, obj: Any, str_as_py2: bool) -> None:
    if obj is None:
        out.write(_NONE)
    elif obj is True or obj is False:
        out.write(_NEWTRUE if obj else _NEWFALSE)
    elif isinstance(obj, int):
        _write_int(out, obj)
    elif isinstance(obj, float):
        out.write(_BINFLOAT + struct.pack(">d", obj))
    elif isinstance(obj, bytes):
        _write_py2_bytes(out, obj)
    elif isinstance(obj, str):
        if str_as_py2:
            # A Python 2 `str` holding UTF-8 bytes, as REFER's Python 2 scripts wrote them.
            _write_py2_bytes(out, obj.encode("utf-8"))
        else:
            raw = obj.encode("utf-8", "surrogatepass")
            out.write(_BINUNICODE + struct.pack("<I", len(raw)) + raw)
    elif isinstance(obj, dict):
        out.write(_EMPTY_DICT)
        items = list(obj.items())
        for start in range(0, len(items), _BATCH):
            out.write(_MARK)
            for key, value in items[start:start + _BATCH]:
                _write_obj(out, key, str_as_py2)
                _write_obj(out, value, str_as_py2)
            out.write(_SETITEMS)
    elif isinstance(obj, list):
        out.write(_EMPTY_LIST)
        for start in range(0, len(obj), _BATCH):
            out.write(_MARK)
            for value in obj[start:start + _BATCH]:
                _write_obj(out, value, str_as_py2)
            out.write(_APPENDS)
    elif isinstance(obj, tuple):
        if not obj:
            out.write(_EMPTY_TUPLE)
        elif len(obj) in _TUPLE_N:
            for value in obj:
                _write_obj(out, value, str_as_py2)
            out.write(_TUPLE_N[len(obj)])
        else:
            out.write(_MARK)
            for value in obj:
                _write_obj(out, value, str_as_py2)
            out.write(_TUPLE)
    else:
        raise TypeError(f"dump_py2_plain: unsupported type {type(obj).__name__}")


def dumps_py2_plain(obj: Any, *, str_as_py2: bool = True) -> bytes:
    """Serialise plain data with Python 2 cPickle protocol 2 opcodes.

    str_as_py2: write `str` as Python 2 byte strings (UTF-8 bytes), like REFER's files; False writes
    them as Python 2 `unicode` (BINUNICODE).
    """
    out = io.BytesIO()
    out.write(_PROTO + b"\x02")
    _write_obj(out, obj, str_as_py2)
    out.write(_STOP)
    return out.getvalue()


def dump_py2_plain(obj: Any, path: str | Path, *, str_as_py2: bool = True) -> Path:
    """Write `dumps_py2_plain(obj)` to `path` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dumps_py2_plain(obj, str_as_py2=str_as_py2))
    return path
