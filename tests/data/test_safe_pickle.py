"""The restricted unpickler: plain data in, anything executable rejected with a DataError naming the file."""
from __future__ import annotations

import os
import pickle
import pickletools

import pytest

from vdit.data.safe_pickle import (
    decode_py2_strings, dump_py2_plain, dumps_py2_plain, load_plain_pickle, loads_plain_pickle,
)
from vdit.errors import DataError

PLAIN = {
    "ints": [0, 1, 255, 256, 65535, 65536, -1, -(2**31), 2**31, 2**70, -(2**70)],
    "floats": [0.5, -1e300, float("inf")],
    "text": ["", "ascii", "café", "x" * 300],
    "flags": [True, False, None],
    "nested": ({"a": (1, 2)}, [(), (1,), (1, 2, 3, 4)]),
}


class Sneaky:
    """Unpickling this would run os.system; the loader must never call it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_python3_plain_pickles_load(protocol):
    obj = dict(PLAIN, sets=[{1, 2}, frozenset({"a"})], raw=[b"\x00\xff", bytearray(b"ab")], z=[1 + 2j])
    assert loads_plain_pickle(pickle.dumps(obj, protocol=protocol)) == obj


def test_python2_style_pickle_round_trip():
    data = dumps_py2_plain(PLAIN)
    ops = {op.name for op, _, _ in pickletools.genops(data)}
    assert {"PROTO", "SHORT_BINSTRING", "BINSTRING", "LONG1", "BININT", "BININT2", "BININT1"} <= ops
    assert "GLOBAL" not in ops and "BINUNICODE" not in ops
    # default latin-1 keeps every byte (the UTF-8 of "café" shows up as two characters) ...
    assert loads_plain_pickle(data)["text"][2] == "cafÃ©"
    # ... while bytes + decode_py2_strings recovers the UTF-8 text
    assert decode_py2_strings(loads_plain_pickle(data, encoding="bytes")) == PLAIN
    assert loads_plain_pickle(dumps_py2_plain(PLAIN, str_as_py2=False)) == PLAIN


def test_decode_py2_strings_falls_back_to_latin1():
    assert decode_py2_strings({b"k": [b"caf\xe9", (b"ok",)]}) == {"k": ["café", ("ok",)]}


def test_file_round_trip_and_missing_file(tmp_path):
    path = dump_py2_plain([{"ref_id": 1}], tmp_path / "sub" / "refs(unc).p")
    assert load_plain_pickle(path) == [{"ref_id": 1}]
    with pytest.raises(DataError, match=r"nope\.p: cannot read"):
        load_plain_pickle(tmp_path / "nope.p")


def test_code_execution_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.p"
    path.write_bytes(pickle.dumps([Sneaky(str(marker))], protocol=2))
    with pytest.raises(DataError, match=r"evil\.p: .*posix\.system|evil\.p: .*os\.system"):
        load_plain_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("obj", [Sneaky("x").__class__, pickle.PickleError("boom"), range(3)])
def test_any_other_global_is_refused(tmp_path, obj):
    path = tmp_path / "bad.p"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(DataError, match=r"bad\.p: not a plain-data pickle.*is not allowed"):
        load_plain_pickle(path)


def test_codecs_encode_only_with_latin1():
    evil = b"\x80\x02c_codecs\nencode\nq\x00X\x03\x00\x00\x00abcq\x01X\x04\x00\x00\x00zlibq\x02\x86q\x03Rq\x04."
    with pytest.raises(DataError, match="zlib"):
        loads_plain_pickle(evil, source="x.p")


def test_persistent_ids_and_garbage_are_refused(tmp_path):
    class WithPid(pickle.Pickler):
        def persistent_id(self, obj):
            return "pid" if obj == "secret" else None

    import io

    buf = io.BytesIO()
    WithPid(buf, protocol=2).dump(["secret"])
    with pytest.raises(DataError, match="persistent"):
        loads_plain_pickle(buf.getvalue(), source="pid.p")
    for junk in (b"", b"not a pickle at all", dumps_py2_plain([1, 2, 3])[:-3]):
        with pytest.raises(DataError, match="junk.p"):
            loads_plain_pickle(junk, source="junk.p")


def test_writer_rejects_non_plain_objects(tmp_path):
    with pytest.raises(TypeError, match="Sneaky"):
        dumps_py2_plain([Sneaky("x")])


def test_python2_protocol0_text_pickle():
    # what Python 2's pickle.dump(obj, f) wrote by default: text opcodes, str as quoted byte strings
    data = b"(lp0\n(dp1\nS'sent'\np2\nS'caf\\xc3\\xa9'\np3\nsS'sent_id'\np4\nI7\nsaI2\na."
    assert decode_py2_strings(loads_plain_pickle(data, encoding="bytes")) == [{"sent": "café", "sent_id": 7}, 2]
    assert loads_plain_pickle(data) == [{"sent": "cafÃ©", "sent_id": 7}, 2]
