"""Refuse a workbook that would make calamine loop, allocate without end or abort, before it
is opened: calamine trusts the sizes and chains a file declares, and a few KB can ask it for GiB.

What is refused, and why each limit (docs/RELIABILITY.md has the measurements):

- zip members declaring more than 1 GiB uncompressed in all (``_MAX_UNZIPPED``): calamine stops
  at a member's declared size, so the declared sizes bound what it inflates;
- a member over 1 MiB expanding more than 100 times (``_MAX_RATIO``): real sheets expand 5 to 20
  times, deflate's ceiling is about 1,032, so more is a zip bomb;
- an xlsx/xlsm sheet with a cell beyond Excel's last row (``_EXCEL_ROWS``), or whose used range
  spans more than 2^25 cells (``_MAX_CELLS``, A1:AF1048576): calamine allocates the whole
  rectangle, 32 bytes a cell; the sheet XML is scanned once, streamed;
- an OLE2 file (xls, password-protected xlsx) whose sector chains loop, leave the file or are
  cut short, or whose streams claim more bytes than the file has ([MS-CFB]);
- an ods whose content.xml does not end by closing its root element: calamine loops for ever on
  a cut one.

Every refusal is an ``InputError`` naming the file and the fix; zipfile, zlib and struct errors
are translated here.
"""

from __future__ import annotations

import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from importer.errors import InputError

__all__ = ["not_a_workbook", "password_protected", "workbook_format"]

_CHUNK = 1024 * 1024
"""The read size of a zip member, and the size above which its compression ratio is checked."""
_MAX_UNZIPPED = 1 << 30
"""A workbook whose zip members declare more than 1 GiB uncompressed in all is refused."""
_MAX_RATIO = 100
"""A member over 1 MiB that expands more than this is refused: real sheets expand 5 to 20
times, deflate's ceiling is about 1,032 (a zip bomb)."""
_EXCEL_ROWS = 1_048_576
_MAX_CELLS = 1 << 25
"""The most cells a sheet's used range may span (A1:AF1048576): calamine allocates the whole
rectangle, 32 bytes a cell, so two far cells in a tiny file would ask for 512 GiB."""
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    KeyError,
    EOFError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    ValueError,
)
_REF = rb""" r\s*=\s*["']"""
"""An attribute named r, as quick-xml reads one (the chunks have tabs and newlines made spaces,
so the literal " r" prefix keeps the search fast)."""
_SPACES = bytes.maketrans(b"\t\n\r", b"   ")
_FAR_REF = re.compile(
    _REF + rb"(?=[A-Za-z]*0*[1-9]\d{6}|[A-Za-z]{3}|[B-Zb-z][A-Za-z]\d"
    rb"|[Aa][G-Zg-z]\d)([A-Za-z]*)(\d*)"
)
"""A reference in row 1,000,000 or more, or beyond column AF: rare, so cheap to look at."""
_ANY_ROW = re.compile(_REF + rb"[A-Za-z]*(\d+)")
_OVERLAP = 4096


def workbook_format(name: str, p: Path, magic: bytes) -> str:
    """The workbook kind; refuse zip bombs and sheets too large to hold before calamine."""
    if magic.startswith(b"\xd0\xcf\x11\xe0"):
        if _is_encrypted_ooxml(name, p):
            raise password_protected(name)
        return "xls"
    try:
        with zipfile.ZipFile(p) as z:
            infos = z.infolist()
            _check_sizes(name, infos)
            names = {i.filename for i in infos}
            mimetype = z.read("mimetype") if "mimetype" in names else b""
            fmt = (
                "ods"
                if b"opendocument.spreadsheet" in mimetype
                else "xlsb"
                if "xl/workbook.bin" in names
                else ("xlsm" if "xl/vbaProject.bin" in names else "xlsx")
                if "xl/workbook.xml" in names
                else ""
            )
            if fmt in ("xlsx", "xlsm"):
                for info in infos:
                    if info.filename.lower().endswith(".xml"):
                        _check_extent(name, z, info)
            if fmt == "ods" and "content.xml" in names:
                _check_complete(name, z, z.getinfo("content.xml"))
    except _ZIP_ERRORS as exc:
        raise not_a_workbook(name, p, "a damaged zip archive") from exc
    if not fmt:
        raise not_a_workbook(name, p, "a zip archive without a spreadsheet in it")
    return fmt


def _check_sizes(name: str, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip bomb from its declared sizes (calamine stops at a declared size)."""
    total = 0
    for info in infos:
        total += info.file_size
        ratio = info.file_size // max(info.compress_size, 1)
        if info.file_size > _CHUNK and ratio > _MAX_RATIO:
            raise InputError(
                f"{name}: its part {info.filename} expands {ratio:,} times when "
                f"unzipped (real workbooks: under {_MAX_RATIO}): it looks like a "
                "zip bomb and is not read; export the list again as .csv or .xlsx"
            )
    if total > _MAX_UNZIPPED:
        raise InputError(
            f"{name} expands to {total / (1 << 30):.1f} GiB when unzipped, over "
            "the 1 GiB limit: split it into smaller workbooks, or save it as .csv"
        )


def _member_chunks(z: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A member's bytes in 1 MiB chunks, each starting with the last 4 KiB of the one before,
    tabs and line breaks made spaces."""
    tail = b""
    with z.open(info) as member:
        while chunk := member.read(_CHUNK):
            chunk = chunk.translate(_SPACES)
            yield tail + chunk
            tail = chunk[-_OVERLAP:]


def _column_number(letters: bytes) -> int:
    number = 0
    for c in letters.upper():
        number = number * 26 + c - 64
    return number


def _check_extent(name: str, z: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse a sheet whose used range spans more than ``_MAX_CELLS`` cells."""
    far = 0
    for data in _member_chunks(z, info):
        for m in _FAR_REF.finditer(data):
            column, row = m.groups()
            if row and int(row) > _EXCEL_ROWS:
                raise InputError(
                    f"{name}: {info.filename} has a cell in row {int(row):,}, "
                    f"beyond Excel's last row ({_EXCEL_ROWS:,}): the file is "
                    "damaged; open it in Excel and save it again as .xlsx"
                )
            end = data.find(b">", m.end())
            number = _column_number(column)
            if number > 32 and (end < 0 or data[end - 1 : end] != b"/"):  # <c r="XFD1" s="3"/>
                far = max(far, number)
    if not far:
        return  # columns A to AF, rows up to 1,048,576: within _MAX_CELLS
    rows = max(
        (int(r) for data in _member_chunks(z, info) for r in _ANY_ROW.findall(data)), default=1
    )
    if far * rows > _MAX_CELLS:
        raise InputError(
            f"{name}: {info.filename} spans {far:,} columns by {rows:,} rows, over "
            f"{_MAX_CELLS:,} cells: delete the far-off cells (Ctrl+End shows the "
            "last one) and save it again, or save the list as .csv"
        )


_ROOT = re.compile(rb"<([A-Za-z_][\w.:-]*)")


def _check_complete(name: str, z: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Refuse an ODS whose content is cut short (calamine loops for ever on it): its XML must end
    by closing the element it starts with (``</office:document-content>``)."""
    root = b""
    tail = b""
    for data in _member_chunks(z, info):
        if not root:
            start = _ROOT.search(data, data.find(b"?>") + 1 if data.startswith(b"<?") else 0)
            root = start.group(1) if start else b""
        tail = data[-_OVERLAP:]
    if not root or not tail.rstrip(b" ").endswith(b"</" + root + b">"):
        raise InputError(
            f"{name}: its content ({info.filename}) is cut short: the file is damaged or was "
            "not saved completely; open it in LibreOffice and save it again as .ods"
        )


_END_OF_CHAIN = 0xFFFFFFFE
_MINI_CUTOFF = 4096


class _DamagedOle(Exception):
    """An OLE2 structure calamine would loop on or size wrongly (never leaves this module)."""


def _ole_names(name: str, p: Path) -> set[str]:
    """The stream names of an OLE2 file ([MS-CFB]), once every sector chain in it is checked:
    calamine follows chains and trusts sizes, so a cycle or a 4 GiB size in a 5 KB file would
    make it loop or allocate without end."""
    try:
        with p.open("rb") as f:
            return _CfbCheck(f, p.stat().st_size).names()
    except (_DamagedOle, struct.error, OSError, UnicodeDecodeError) as exc:
        raise not_a_workbook(name, p, f"a damaged OLE2 file: {exc}") from exc


class _CfbCheck:
    """Walk an OLE2 file's FAT, directory and mini FAT with bounded effort."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size = f, size
        header = f.read(512)
        if len(header) < 512:
            raise _DamagedOle("shorter than its header")
        self.header = header
        shift = struct.unpack_from("<H", header, 30)[0]
        if shift not in (9, 12):  # 512 or 4,096 bytes
            raise _DamagedOle(f"sector shift {shift}")
        self.sector = 1 << shift
        self.count = size // self.sector - 1  # whole sectors after the header (calamine panics
        # on a sector cut short)
        fat_sectors = list(struct.unpack_from("<109I", header, 76))
        difat = struct.unpack_from("<I", header, 68)[0]
        for _ in range(self.count + 1):
            if difat >= _END_OF_CHAIN:
                break
            entries = self.words(self.read(difat))
            fat_sectors += entries[:-1]
            difat = entries[-1]
        else:
            raise _DamagedOle("its DIFAT chain loops")
        self.fat: list[int] = []
        for n in fat_sectors:
            if n < self.count:
                self.fat += self.words(self.read(n))

    def words(self, block: bytes) -> list[int]:
        return list(struct.unpack(f"<{len(block) // 4}I", block))

    def read(self, n: int) -> bytes:
        if n >= self.count:
            raise _DamagedOle(f"sector {n} is past its end")
        self.f.seek((n + 1) * self.sector)
        return self.f.read(self.sector).ljust(self.sector, b"\0")

    def chain(self, start: int, table: list[int], what: str) -> list[int]:
        """The sectors of a chain, refusing one that loops or leaves the table."""
        out: list[int] = []
        n = start
        while n != _END_OF_CHAIN:
            if n >= len(table) or len(out) > len(table):
                raise _DamagedOle(f"the chain of {what} is broken")
            if table is self.fat and n >= self.count:
                raise _DamagedOle(f"{what} runs past the end of the file: it is cut short")
            out.append(n)
            n = table[n]
        return out

    def names(self) -> set[str]:
        header, names = self.header, set()
        directory = b"".join(
            self.read(n)
            for n in self.chain(struct.unpack_from("<I", header, 48)[0], self.fat, "its directory")
        )
        entries = [directory[at : at + 128] for at in range(0, len(directory), 128)]
        minifat_start = struct.unpack_from("<I", header, 60)[0]
        minifat = (
            []
            if minifat_start >= _END_OF_CHAIN
            else self.words(
                b"".join(self.read(n) for n in self.chain(minifat_start, self.fat, "its mini FAT"))
            )
        )
        root_size = 0
        for i, entry in enumerate(entries):
            length, kind = struct.unpack_from("<HB", entry, 64)
            start, size = struct.unpack_from("<II", entry, 116)  # v3: the high word is ignored
            if kind not in (1, 2, 5) or not 2 <= length <= 64:
                continue
            label = entry[: length - 2].decode("utf-16-le")
            names.add(label)
            if kind == 1:
                continue
            if size > self.size:
                raise _DamagedOle(f'"{label}" claims {size:,} bytes')
            if kind == 5:
                root_size = size
            if i == 0 or size >= _MINI_CUTOFF:
                if size:
                    self.chain(start, self.fat, f'"{label}"')
            elif size:
                sectors = self.chain(start, minifat, f'"{label}"')
                if max(sectors) * 64 >= root_size:
                    raise _DamagedOle(f'"{label}" is past the end of the mini stream')
        return names


def _is_encrypted_ooxml(name: str, p: Path) -> bool:
    """Whether an OLE2 file holds the streams of a password-protected .xlsx (and refuse one
    whose structure is damaged)."""
    names = _ole_names(name, p)
    return "EncryptionInfo" in names and "EncryptedPackage" in names


def password_protected(name: str) -> InputError:
    """The refusal of a password-protected workbook."""
    return InputError(
        f"{name} is protected by a password: open it, remove the password and save it again"
    )


def not_a_workbook(name: str, p: Path, what: str) -> InputError:
    """The refusal of a damaged workbook, ``what`` saying how; the fix names LibreOffice for .ods."""
    if p.suffix.lower() == ".ods":
        return InputError(
            f"{name} is not a valid OpenDocument spreadsheet ({what}): open it "
            "in LibreOffice and save it again as .ods"
        )
    return InputError(
        f"{name} is not a valid Excel workbook ({what}): open it in Excel and "
        "save it again as .xlsx"
    )
