"""The bad-input battery (issue 6): every hostile file through the real CLI gets exit 2, one line
``Error: ...`` naming the file and the fix, no traceback, no run folder, nothing sent, and a
bounded time and memory. The files are made here, in tmp_path, by real libraries or by hand
where no library writes them (a zip bomb, an encrypted OOXML container)."""

from __future__ import annotations

import csv
import os
import re
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import openpyxl
import pytest

from importer.config import ReadOptions
from importer.errors import InputError
from importer.reader import open_source
from importer.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
MiB = 1 << 20
MEMORY_LIMIT = 128 * MiB
"""The peak RSS allowed to the whole CLI process refusing any one hostile file."""

PEAK_RSS = (
    "def peak_rss():\n"
    "    # VmHWM, not ru_maxrss: Linux carries the forking parent's peak into ru_maxrss\n"
    "    with open('/proc/self/status') as status:\n"
    "        return next(int(l.split()[1]) * 1024 for l in status if l.startswith('VmHWM'))\n"
)
RUN_MEASURED = PEAK_RSS + (
    "import atexit, os, runpy, sys\n"
    "def report():\n"
    "    with open(os.environ['HOSTILE_RSS_FILE'], 'w') as f:\n"
    "        f.write(str(peak_rss()))\n"
    "atexit.register(report)\n"
    "sys.argv[0] = 'dnc-import'\n"
    "runpy.run_module('importer', run_name='__main__', alter_sys=True)\n"
)
"""``python -m importer`` that writes its peak RSS (bytes) to $HOSTILE_RSS_FILE at exit."""


# -- the hostile files ----------------------------------------------------------------------


def real_xlsx(path: Path, rows: int = 200) -> Path:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["Teléfono", "Días"])
    for i in range(rows):
        ws.append([f"31912{i:05d}", 30])
    wb.save(path)
    return path


def deflate_repeat(prefix: bytes, unit: bytes, count: int, suffix: bytes) -> tuple[bytes, int, int]:
    """(raw deflate stream, CRC-32, size) of ``prefix + unit * count + suffix``, without
    compressing it all: after a full flush the compressor starts afresh, so every ``unit``
    compresses to the same bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    body = c.compress(unit) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.compress(suffix) + c.flush()
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(unit, crc)
    return head + body * count + tail, zlib.crc32(suffix, crc), len(prefix + suffix) + len(unit) * count


Member = tuple[str, bytes, int, int, int]
"""(name, raw deflate data, CRC-32, size, declared size)."""


def write_zip(path: Path, members: list[Member]) -> Path:
    """A zip written by hand (zipfile cannot store an already deflated stream)."""
    out, central = bytearray(), bytearray()
    for name, data, crc, _size, declared in members:
        raw, offset = name.encode(), len(out)
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data),
                           declared, len(raw), 0) + raw + data
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc,
                               len(data), declared, len(raw), 0, 0, 0, 0, 0, offset) + raw
    out += central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                                 len(central), len(out), 0)
    path.write_bytes(bytes(out))
    return path


def deflated(name: str, data: bytes) -> Member:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return name, c.compress(data) + c.flush(), zlib.crc32(data), len(data), len(data)


SHEET = "xl/worksheets/sheet1.xml"
SHEET_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxml'
              b'formats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" '
              b't="inlineStr"><is><t>Telefono</t></is></c></row>')


def with_sheet(path: Path, sheet: Member) -> Path:
    """A real workbook (openpyxl) whose first sheet is replaced by ``sheet``."""
    src = zipfile.ZipFile(real_xlsx(path.with_name("base-" + path.name)))
    members = [sheet if n == SHEET else deflated(n, src.read(n)) for n in src.namelist()]
    return write_zip(path, members)


def zip_bomb(path: Path, gib: int = 2) -> Path:
    """A ~2 MB workbook whose sheet XML is a real 2 GiB deflate stream (one cell of '3's)."""
    prefix = SHEET_HEAD + b'<row r="2"><c r="A2" t="inlineStr"><is><t>'
    data, crc, size = deflate_repeat(prefix, b"3" * MiB, gib << 10,
                                     b"</t></is></c></row></sheetData></worksheet>")
    return with_sheet(path, (SHEET, data, crc, size, size))


def sheet_with(path: Path, rows: bytes) -> Path:
    xml = SHEET_HEAD + rows + b"</sheetData></worksheet>"
    return with_sheet(path, deflated(SHEET, xml))


def far_cells(path: Path) -> Path:
    """Two cells, A2 and XFD1048576: a 5 KB file calamine would give a 512 GiB range."""
    return sheet_with(path, b'<row r="2"><c r="A2"><v>3191234567</v></c></row><row '
                            b'r="1048576"><c s="0" r="XFD1048576"><v>1</v></c></row>')


def row_beyond_excel(path: Path) -> Path:
    return sheet_with(path, b'<row r="2"><c r="A2"><v>3191234567</v></c></row><row r="4000000000">'
                            b"<c r='A4000000000'><v>1</v></c></row>")


def lying_sizes(path: Path) -> Path:
    """The sheet's header says 1,000 bytes; its stream holds 64 MiB."""
    data, crc, size = deflate_repeat(SHEET_HEAD + b"<row>", b" " * MiB, 64, b"</row></sheetData>")
    return with_sheet(path, (SHEET, data, crc, size, 1000))


def over_a_gib(path: Path) -> Path:
    """Members declaring 11 x 100 MiB, each at a plausible ratio (the sizes are checked first)."""
    base = zipfile.ZipFile(real_xlsx(path.with_name("base-" + path.name)))
    members = [deflated(n, base.read(n)) for n in base.namelist()]
    blob = os.urandom(MiB + 64 * 1024)
    members += [(f"xl/media/image{i}.bin", blob, zlib.crc32(blob), 100 * MiB, 100 * MiB)
                for i in range(11)]
    return write_zip(path, members)


def ole2(path: Path, streams: dict[str, bytes]) -> Path:
    """A minimal OLE2 (MS-CFB v3) container holding ``streams`` (each 4,096 bytes or more, so
    all live in regular sectors): what Excel writes around an encrypted .xlsx."""
    assert len(streams) <= 3 and all(len(d) >= 4096 for d in streams.values())
    end, free, fat_sect, nostream = 0xFFFFFFFE, 0xFFFFFFFF, 0xFFFFFFFD, 0xFFFFFFFF
    fat = [fat_sect, end]  # sector 0: the FAT, sector 1: the directory
    body, starts = b"", []
    for data in streams.values():
        data += b"\0" * (-len(data) % 512)
        first, count = len(fat), len(data) // 512
        starts.append(first)
        fat += [first + i + 1 for i in range(count - 1)] + [end]
        body += data
    assert len(fat) <= 128
    fat += [free] * (128 - len(fat))

    def entry(name: str, kind: int, right: int, child: int, start: int, size: int) -> bytes:
        raw = name.encode("utf-16-le") + b"\0\0"
        return (raw.ljust(64, b"\0") + struct.pack("<HBBIII", len(raw), kind, 1, nostream, right,
                                                   child) + b"\0" * 36 + struct.pack("<IQ", start, size))

    names = list(streams)  # a chain of right siblings, in CFB order (shorter names first)
    names.sort(key=lambda n: (len(n), n.upper()))
    directory = entry("Root Entry", 5, nostream, 1, end, 0)
    for i, name in enumerate(names):
        right = i + 2 if i + 1 < len(names) else nostream
        directory += entry(name, 2, right, nostream, starts[list(streams).index(name)],
                           len(streams[name]))
    directory = directory.ljust(512, b"\0")
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 16
              + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
              + struct.pack("<IIIIIIIII", 0, 1, 1, 0, 4096, end, 0, end, 0)
              + struct.pack("<109I", 0, *([free] * 108)))
    assert len(header) == 512
    path.write_bytes(header + struct.pack("<128I", *fat) + directory + body)
    return path


def encrypted_xlsx(path: Path) -> Path:
    info = struct.pack("<HHI", 4, 4, 0x40) + b'<?xml version="1.0"?><encryption/>'
    return ole2(path, {"EncryptionInfo": info.ljust(4096, b"\0"),
                       "EncryptedPackage": struct.pack("<Q", 8192) + bytes(range(256)) * 32})


def text(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def good_csv(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["Teléfono", "Días"], ["3191234567", "30"], ["3001234567", "7"]])
    return path


def symlink(path: Path, target: str) -> Path:
    path.symlink_to(target)
    return path


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def folder(path: Path) -> Path:
    path.mkdir()
    (path / "a.csv").write_text("Telefono\n3191234567\n", encoding="utf-8")
    return path


HEADER = b"Tel\xc3\xa9fono;D\xc3\xadas\r\n3191234567;30\r\n"
WORKBOOK_FIX = "open it in Excel and save it again as .xlsx"


def truncated(path: Path) -> Path:
    whole = real_xlsx(path.with_name("full.xlsx")).read_bytes()
    return text(path, whole[:len(whole) // 2])


def garbage_members(path: Path) -> Path:
    names = zipfile.ZipFile(real_xlsx(path.with_name("good.xlsx"))).namelist()
    return write_zip(path, [deflated(n, bytes(range(256)) * 3) for n in names])


def case(file: str, make: Callable[[Path], Path], *message: str) -> tuple[
        str, Callable[[Path], Path], str]:
    """(file name, how to make it, the exact message after "Error: "; "~..." is a regex)."""
    return file, make, "".join(message)


CASES: dict[str, tuple[str, Callable[[Path], Path], str]] = {
    "empty": case("empty.csv", lambda p: text(p, b""),
                  "empty.csv is empty (0 bytes): export it again with its rows"),
    "header only": case("header.csv", lambda p: text(p, b"Telefono;Dias\r\n"),
                        "header.csv has no data rows below the header (row 1): export it ",
                        "again with its rows, or remove it from the run"),
    "binary named .csv": case("photo.csv", lambda p: text(p, bytes(range(256)) * 64),
                              "photo.csv looks like a binary file, not a spreadsheet or a text ",
                              "(CSV) file: export it again as .csv or .xlsx"),
    "truncated xlsx": case("half.xlsx", truncated, "half.xlsx is not a valid Excel workbook ",
                           f"(a damaged zip archive): {WORKBOOK_FIX}"),
    "corrupt xlsx": case("corrupt.xlsx", garbage_members,
                         r"~corrupt\.xlsx is not a valid Excel workbook \(.+\): ",
                         re.escape(WORKBOOK_FIX)),
    "lying zip sizes": case("liar.xlsx", lying_sizes, "liar.xlsx is not a valid Excel workbook ",
                            f"(a damaged zip archive): {WORKBOOK_FIX}"),
    "password-protected": case("secret.xlsx", encrypted_xlsx,
                               "secret.xlsx is protected by a password: open it, remove the ",
                               "password and save it again"),
    "zip bomb": case("bomb.xlsx", zip_bomb,
                     "bomb.xlsx: its part xl/worksheets/sheet1.xml expands 1,010 times when ",
                     "unzipped (real workbooks: under 100): it looks like a zip bomb and is not ",
                     "read; export the list again as .csv or .xlsx"),
    "over 1 GiB unzipped": case("huge.xlsx", over_a_gib,
                                "huge.xlsx expands to 1.1 GiB when unzipped, over the 1 GiB ",
                                "limit: split it into smaller workbooks, or save it as .csv"),
    "two far cells": case("far.xlsx", far_cells,
                          "far.xlsx: xl/worksheets/sheet1.xml spans 16,384 columns by 1,048,576 ",
                          "rows, over 33,554,432 cells: delete the far-off cells (Ctrl+End ",
                          "shows the last one) and save it again, or save the list as .csv"),
    "row beyond Excel": case("deep.xlsx", row_beyond_excel,
                             "deep.xlsx: xl/worksheets/sheet1.xml has a cell in row ",
                             "4,000,000,000, beyond Excel's last row (1,048,576): the file is ",
                             "damaged; open it in Excel and save it again as .xlsx"),
    "a 50 MB line": case("long.csv", lambda p: text(p, HEADER + b"3" * (50 * MiB) + b"\r\n"),
                         "long.csv: line 3 is longer than 1 MiB: no phone list has such lines; ",
                         "is it really a text (CSV) file? Export it again as .csv or .xlsx"),
    "a million columns": case("wide.csv", lambda p: text(p, b"Telefono" + b"," * 1_000_000
                                                         + b"\n3191234567\n"),
                              "wide.csv: line 1 has 1,000,001 columns, more than a spreadsheet ",
                              "holds (16,384): is the delimiter right? Force it with --delimiter ",
                              "';' (or tab), or export the file again"),
    "mixed encodings": case("mixed.csv", lambda p: text(p, HEADER + b"3001234567;7 Bogot\xe1\r\n"),
                            "mixed.csv: line 3 is not UTF-8 while lines before it are: the file ",
                            "mixes encodings; save it again as UTF-8, or force one with ",
                            "--encoding cp1252"),
    "NUL bytes": case("nul.csv", lambda p: text(p, HEADER * 5000 + b"300\x00123\r\n"),
                      "nul.csv: line 10001 contains a NUL byte: the file is damaged or not a ",
                      "text file; remove that line or export it again"),
    "symlink to /dev/zero": case("zero.csv", lambda p: symlink(p, "/dev/zero"),
                                 "zero.csv is not a regular file (a device): save the list as a ",
                                 ".csv or .xlsx file and name that file"),
    "named pipe": case("pipe.csv", fifo,
                       "pipe.csv is not a regular file (a named pipe): save the list as a .csv ",
                       "or .xlsx file and name that file"),
    "folder": case("exports", folder,
                   "exports is a folder, not a file: name the files inside it (e.g. exports/*.csv)"),
}


# -- running the CLI ----------------------------------------------------------------------


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None
            ) -> tuple[subprocess.CompletedProcess[str], int, float]:
    """(the finished process, its peak RSS in bytes, seconds) of ``dnc-import ARGS``."""
    rss_file = cwd / "rss.txt"
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "HOSTILE_RSS_FILE": str(rss_file),
               "DNC_IMPORT_STATE_DIR": str(cwd / "state"), **(env or {})}
    if env is None:
        environ.pop("WOLKVOX_TOKEN", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", RUN_MEASURED, *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, encoding="utf-8", timeout=60,
                          check=False)
    return done, int(rss_file.read_text()), time.perf_counter() - started


def assert_refused(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    if message.startswith("~"):
        assert re.fullmatch("Error: " + message[1:], lines[0]), lines[0]
    else:
        assert lines[0] == f"Error: {message}"


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_file_is_refused_with_one_line(tmp_path: Path, case: str) -> None:
    name, make, message = CASES[case]
    make(tmp_path / name)
    reports = tmp_path / "reports"
    done, rss, seconds = run_cli(["run", name, "--dry-run", "--reports-dir", str(reports)],
                                 tmp_path)
    assert_refused(done, message)
    assert not reports.exists() or not any(reports.iterdir())
    assert rss < MEMORY_LIMIT, f"{case}: peak RSS {rss / MiB:.0f} MiB"
    assert seconds < 20, f"{case}: {seconds:.1f} s"


def test_the_bomb_refusal_stays_in_bounded_memory(tmp_path: Path) -> None:
    """The reader alone, in a fresh process: the refusal costs a few MiB, not the 2 GiB."""
    bomb = zip_bomb(tmp_path / "bomb.xlsx")
    assert bomb.stat().st_size < 3 * MiB
    info = zipfile.ZipFile(bomb).getinfo(SHEET)
    assert info.file_size > 2 * (1 << 30)
    probe = PEAK_RSS + ("import sys\n"
                        "from importer.config import ReadOptions\n"
                        "from importer.errors import InputError\n"
                        "from importer.reader import open_source\n"
                        "before = peak_rss()\n"
                        "try:\n"
                        "    open_source(sys.argv[1], ReadOptions())\n"
                        "except InputError as exc:\n"
                        "    print(before, peak_rss(), exc)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(bomb)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    before, after, message = done.stdout.split(" ", 2)
    assert "looks like a zip bomb" in message
    assert int(after) < MEMORY_LIMIT
    assert int(after) - int(before) < 16 * MiB


def test_a_hostile_file_among_good_ones_sends_nothing(
    tmp_path: Path, simulator: Callable[..., Simulator], sim_token: str
) -> None:
    """A real send (no --dry-run): every input is opened before anything is sent."""
    sim = simulator(token=sim_token)
    good_csv(tmp_path / "good.csv")
    far_cells(tmp_path / "far.xlsx")
    zip_bomb(tmp_path / "bomb.xlsx")
    reports = tmp_path / "reports"
    done, _, _ = run_cli(["run", "good.csv", "far.xlsx", "bomb.xlsx", "--base-url",
                          sim.base_url, "--reports-dir", str(reports)], tmp_path,
                         env={"WOLKVOX_TOKEN": sim_token})
    assert_refused(done, CASES["two far cells"][2])
    assert sim.calls == 0
    assert sim.dnc_list() == {}
    assert not reports.exists() or not any(reports.iterdir())


# -- the limits, each side of the line ------------------------------------------------------


def test_the_hand_made_containers_are_real(tmp_path: Path) -> None:
    """The bomb inflates to what it declares (CRC checked by zipfile), and the OLE2 container
    is one calamine reads (it finds no Workbook stream in it, rather than a bad header)."""
    liar = lying_sizes(tmp_path / "liar.xlsx")
    with zipfile.ZipFile(liar) as z, pytest.raises(zipfile.BadZipFile):
        z.read(SHEET)
    data, crc, size = deflate_repeat(b"<a>", b"xy" * 1000, 50, b"</a>")
    assert zlib.decompress(data, -15) == b"<a>" + b"xy" * 50_000 + b"</a>"
    assert zlib.crc32(b"<a>" + b"xy" * 50_000 + b"</a>") == crc and size == 100_007
    from python_calamine import CalamineError, CalamineWorkbook

    xls = encrypted_xlsx(tmp_path / "secret.xls")
    with pytest.raises(CalamineError, match="Workbook"):
        CalamineWorkbook.from_path(xls)


def test_a_plain_xls_is_not_taken_for_a_protected_one() -> None:
    source = open_source(ROOT / "tests" / "data" / "legacy.xls", ReadOptions())
    assert source.info.format == "xls"
    assert list(source.rows())


def test_far_cells_that_hold_nothing_are_not_counted(tmp_path: Path) -> None:
    """Excel writes formatted empty cells as <c r="XFD1" s="3"/>; calamine skips them."""
    path = sheet_with(tmp_path / "styled.xlsx",
                      b'<row r="2"><c r="A2"><v>3191234567</v></c><c r="XFD2" s="0"/></row>'
                      b'<row r="1048576" s="0" customFormat="1"/>')
    rows = list(open_source(path, ReadOptions()).rows())
    assert [(r.row, r.phone) for r in rows] == [(2, 3191234567)]


def test_a_wide_sheet_within_the_cell_limit_is_read(tmp_path: Path) -> None:
    """Column ZZ (702) by 100 rows is read; by 48,000 rows it is over 2**25 cells."""
    path = sheet_with(tmp_path / "wide.xlsx",
                      b'<row r="2"><c r="A2"><v>3191234567</v></c><c r="ZZ2"><v>1</v></c></row>'
                      b'<row r="100"><c r="A100"><v>3001234567</v></c></row>')
    rows = list(open_source(path, ReadOptions()).rows())
    assert [(r.row, r.phone) for r in rows] == [(2, 3191234567), (100, 3001234567)]
    with pytest.raises(InputError, match=r"spans 702 columns by 48,000 rows, over 33,554,432"):
        open_source(sheet_with(tmp_path / "wider.xlsx",
                               b'<row r="2"><c r="A2"><v>3191234567</v></c><c r="ZZ2"><v>1</v>'
                               b'</c></row><row r="48000"><c r="A48000"><v>1</v></c></row>'),
                    ReadOptions())


def test_the_row_limit_is_excels_last_row(tmp_path: Path) -> None:
    last = sheet_with(tmp_path / "last.xlsx", b'<row r="2"><c r="A2"><v>3191234567</v></c></row>'
                                              b'<row r="1048576"><c r="A1048576"><v>1</v></c></row>')
    assert len(list(open_source(last, ReadOptions()).rows())) == 2
    beyond = sheet_with(tmp_path / "beyond.xlsx",
                        b'<row r="2"><c r="A2"><v>3191234567</v></c></row>'
                        b'<row r="1048577"><c r="A1048577"><v>1</v></c></row>')
    with pytest.raises(InputError, match=r"has a cell in row 1,048,577, beyond Excel's last"):
        open_source(beyond, ReadOptions())


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_a_line_of_exactly_the_limit_is_read_one_more_is_not(tmp_path: Path, end: bytes) -> None:
    """1 MiB per line (its end aside), whatever the line ends, wherever the chunks fall."""
    cells = b",".join([b"x" * 100] * 10_000)
    line = b"3191234567," + cells + b"y" * (MiB - 11 - len(cells))
    assert len(line) == MiB
    path = text(tmp_path / "edge.csv", b"Telefono" + end + b"3001234567,x" + end
                + (line + end) * 3)
    rows = list(open_source(path, ReadOptions()).rows())
    assert [r.phone for r in rows] == ["3001234567"] + ["3191234567"] * 3
    path.write_bytes(path.read_bytes()[:-len(end)] + b"y" + end)
    with pytest.raises(InputError, match=r"edge\.csv: line \d+ is longer than 1 MiB: "):
        open_source(path, ReadOptions())


def test_columns_up_to_excels_last_are_read(tmp_path: Path) -> None:
    path = text(tmp_path / "w.csv", b"Telefono" + b",x" * 16_383 + b"\n3191234567\n")
    assert [r.phone for r in open_source(path, ReadOptions()).rows()] == ["3191234567"]
    late = text(tmp_path / "late.csv", b"Telefono,Notas\n" + b"3191234567,x\n" * 100
                + b"," * 16_384)
    with pytest.raises(InputError, match=r"early\.csv: line 4 has 16,385 columns, more than"):
        open_source(text(tmp_path / "early.csv", late.read_bytes()[:41] + b"," * 16_384),
                    ReadOptions())  # within the rows searched for the header: at once
    source = open_source(late, ReadOptions())
    with pytest.raises(InputError, match=r"late\.csv: line 102 has 16,385 columns, more than"):
        list(source.rows())


# -- regressions: what the fuzzer and this battery found ---------------------------------------


def test_header_cells_with_line_breaks_give_a_one_line_message(tmp_path: Path) -> None:
    path = text(tmp_path / "notes.csv", b'"una\nnota","\x1b[31mrojo",Otra\r\n1,2,3\r\n')
    with pytest.raises(InputError) as caught:
        open_source(path, ReadOptions())
    assert str(caught.value) == (
        f'{path}: no phone column found; headers seen: "una nota", " [31mrojo", "Otra". '
        "Name it with --phone-column NAME or a position (--phone-column 2).")


def test_a_long_header_row_is_listed_in_part(tmp_path: Path) -> None:
    names = [f"campo{i}" for i in range(30)] + ["x" * 60]
    path = text(tmp_path / "h.csv", (",".join(names) + "\n" + "1," * 30 + "1\n").encode())
    with pytest.raises(InputError) as caught:
        open_source(path, ReadOptions())
    listed = ", ".join(f'"campo{i}"' for i in range(20))
    assert f"headers seen: {listed} and 11 more. Name it" in str(caught.value)


def test_an_ole2_file_cut_short_is_refused_before_calamine(tmp_path: Path) -> None:
    """calamine panicked on a sector cut short (and Rust printed the panic on stderr)."""
    legacy = (ROOT / "tests" / "data" / "legacy.xls").read_bytes()
    path = text(tmp_path / "cut.xls", legacy[:-300])
    with pytest.raises(InputError) as caught:
        open_source(path, ReadOptions())
    assert str(caught.value) == (
        f"{path} is not a valid Excel workbook (a damaged OLE2 file: its directory runs past "
        f"the end of the file: it is cut short): {WORKBOOK_FIX}")


def test_a_bad_sector_size_is_refused(tmp_path: Path) -> None:
    """Found by the fuzzer: a shifted header made ``1 << shift`` a number of 20,000 digits."""
    legacy = (ROOT / "tests" / "data" / "legacy.xls").read_bytes()
    path = text(tmp_path / "shifted.xls", legacy[:4] + b"\0" * 7 + legacy[4:])
    with pytest.raises(InputError, match=r"a damaged OLE2 file: sector shift \d+\)"):
        open_source(path, ReadOptions())


def test_a_broken_sector_chain_is_refused_in_bounded_memory() -> None:
    """Found by the fuzzer: calamine asked for 4 GiB and the process died. In a subprocess with
    a 1 GiB address-space limit, so that a regression fails here instead of killing pytest."""
    probe = ("import resource, sys\n"
             "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
             "from importer.config import ReadOptions\n"
             "from importer.errors import InputError\n"
             "from importer.reader import open_source\n"
             "try:\n"
             "    open_source(sys.argv[1], ReadOptions())\n"
             "except InputError as exc:\n"
             "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", probe, "tests/data/hostile/fat_loop.xls"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        "tests/data/hostile/fat_loop.xls is not a valid Excel workbook (a damaged OLE2 file: "
        f"the chain of its directory is broken): {WORKBOOK_FIX}\n")


def test_a_calamine_panic_becomes_an_input_error(tmp_path: Path) -> None:
    """pyo3 raises a Rust panic as PanicException, a BaseException no module exports."""
    from importer import reader

    class PanicException(BaseException):
        pass

    with pytest.raises(InputError) as caught, reader._no_panic("b.xlsx", Path("b.xlsx")):
        raise PanicException("range start index 116 out of range\nmore")
    assert str(caught.value) == ("b.xlsx is not a valid Excel workbook (the reader failed on it: "
                                 f"range start index 116 out of range): {WORKBOOK_FIX}")
    assert isinstance(caught.value.__cause__, PanicException)
    with pytest.raises(KeyboardInterrupt), reader._no_panic("b.xlsx", Path("b.xlsx")):
        raise KeyboardInterrupt
