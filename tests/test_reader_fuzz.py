"""Fuzz the reader (issue 6): random bytes, and real gallery files (CSV, TSV, UTF-16 text, xlsx,
ods, xls) with bytes flipped, inserted, deleted, repeated or cut, either in the file itself or
inside one member of a workbook's zip (so that calamine's XML parsing is reached, not only the
zip checks). Whatever the bytes, ``open_source`` then ``rows()`` either works or raises
``InputError``/``UsageError``: no other exception, no hang, bounded memory.

``FUZZ_EXAMPLES=3000 .venv/bin/pytest tests/test_reader_fuzz.py -q`` runs the long battery
(docs/RELIABILITY.md has its last figures); the default count keeps CI near 20 s.
"""

from __future__ import annotations

import io
import os
import resource
import zipfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer.config import ReadOptions
from importer.errors import InputError, UsageError
from importer.reader import open_source

DATA = Path(__file__).parent / "data"
SEEDS = {name: (DATA / name).read_bytes() for name in (
    "utf8_comma.csv", "cp1252_spanish.csv", "multiline_cells.csv", "tab.tsv",
    "excel_unicode_text.txt", "numeric.xlsx", "sheets.xlsx", "calc.ods", "legacy.xls",
)}
SUFFIXES = (".csv", ".txt", ".tsv", ".xlsx", ".xls", ".ods", "")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
RSS_LIMIT_KIB = 1 << 20
"""1 GiB: the whole pytest process, however many examples ran (ru_maxrss only grows)."""

Edit = tuple[str, int, int, bytes]
"""(kind, position, length, bytes) with positions taken modulo the data's length."""

edits = st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete", "repeat", "cut"]),
                           st.integers(0, 1 << 20), st.integers(1, 64), st.binary(max_size=16)),
                 min_size=1, max_size=6)


def mutate(data: bytes, changes: list[Edit]) -> bytes:
    out = bytearray(data)
    for kind, pos, length, blob in changes:
        at = pos % (len(out) + 1)
        if kind == "flip" and out:
            at %= len(out)
            out[at] ^= 1 << (length % 8)
        elif kind == "insert":
            out[at:at] = blob or b"\x00"
        elif kind == "delete":
            del out[at:at + length]
        elif kind == "repeat":
            out[at:at] = bytes(out[at:at + length]) * (length % 5 + 1)
        elif kind == "cut":
            del out[at:]
    return bytes(out)


def mutate_member(data: bytes, member: int, changes: list[Edit]) -> bytes:
    """The workbook with one member's uncompressed bytes mutated, zipped again."""
    src = zipfile.ZipFile(io.BytesIO(data))
    names = src.namelist()
    target = names[member % len(names)]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in names:
            body = src.read(name)
            z.writestr(name, mutate(body, changes) if name == target else body)
    return out.getvalue()


def check(tmp_path: Path, data: bytes, suffix: str) -> None:
    """Reading ``data`` gives rows or one of our errors, and memory stays bounded."""
    path = tmp_path / f"fuzzed{suffix}"
    path.write_bytes(data)
    try:
        source = open_source(path, ReadOptions())
        for row in source.rows():
            assert row.source_file == str(path)
    except (InputError, UsageError) as exc:
        assert str(exc) and "\n" not in str(exc), repr(exc)
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert usage < RSS_LIMIT_KIB, f"peak RSS {usage // 1024} MiB"


FUZZ = settings(max_examples=EXAMPLES, deadline=5000, derandomize="FUZZ_RANDOM" not in os.environ,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow], database=None)


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes(tmp_path: Path, data: bytes, suffix: str) -> None:
    check(tmp_path, data, suffix)


@FUZZ
@given(seed=st.sampled_from(sorted(SEEDS)), changes=edits)
def test_mutated_files(tmp_path: Path, seed: str, changes: list[Edit]) -> None:
    check(tmp_path, mutate(SEEDS[seed], changes), Path(seed).suffix)


@FUZZ
@given(seed=st.sampled_from(["numeric.xlsx", "sheets.xlsx", "calc.ods"]),
       member=st.integers(0, 50), changes=edits)
def test_mutated_workbook_members(tmp_path: Path, seed: str, member: int,
                                  changes: list[Edit]) -> None:
    check(tmp_path, mutate_member(SEEDS[seed], member, changes), Path(seed).suffix)


def test_the_mutations_change_the_files() -> None:
    """The fuzzer is not reading the same bytes over and over."""
    seed = SEEDS["numeric.xlsx"]
    assert mutate(seed, [("cut", 100, 1, b"")]) == seed[:100]
    assert mutate(b"abc", [("flip", 1, 1, b"")]) == b"a`c"  # bit 1 of "b"
    assert mutate(b"abc", [("insert", 1, 1, b"XY")]) == b"aXYbc"
    assert mutate(b"abcdef", [("repeat", 1, 2, b"")]) == b"abcbcbcbcdef"  # 2 % 5 + 1 = 3 more copies
    changed = mutate_member(seed, 3, [("insert", 0, 1, b"<<")])
    names = zipfile.ZipFile(io.BytesIO(seed)).namelist()
    z = zipfile.ZipFile(io.BytesIO(changed))
    assert z.read(names[3]) == b"<<" + zipfile.ZipFile(io.BytesIO(seed)).read(names[3])
