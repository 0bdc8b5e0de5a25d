"""Read workbooks (xlsx, xlsm, xlsb, xls, ods) through calamine: probe each sheet, stream rows.

``_open_workbook`` (after ``importer.workbook_guard`` has refused hostile files) picks the sheets
to read, locates each one's header (``importer.header_finder``) and returns a
``_WorkbookSource``, whose ``rows()`` streams ``RawRow``s with typed cells (``_cell``). Every
calamine exception, and its panics, becomes an ``InputError`` naming the file, the sheet and
the fix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from python_calamine import (
    CalamineError,
    CalamineWorkbook,
    PasswordError,
    SheetTypeEnum,
    SheetVisibleEnum,
)

from importer.config import ReadOptions
from importer.errors import InputError
from importer.header_finder import Scan, _Layout, _locate, _NoPhoneColumn, _quoted, _seen_headers
from importer.heap import give_back
from importer.model import CellValue, RawRow
from importer.source import Source, SourceInfo, _one_line, sha256_file
from importer.workbook_guard import not_a_workbook, password_protected, workbook_format

if TYPE_CHECKING:
    from importer.columns import RowColumns

_T = TypeVar("_T")


@contextmanager
def _no_panic(name: str, p: Path) -> Iterator[None]:
    """calamine panics on some damaged files; pyo3 raises that as ``PanicException``, a
    ``BaseException`` that no module exports, hence the test on its name."""
    try:
        yield
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        first = (str(exc).splitlines() or ["a panic"])[0]
        raise not_a_workbook(name, p, f"the reader failed on it: {first}") from exc


def _load(name: str, p: Path) -> CalamineWorkbook:
    try:
        return CalamineWorkbook.from_path(p)
    except PasswordError as exc:
        raise password_protected(name) from exc
    except (CalamineError, OSError, ValueError) as exc:
        raise not_a_workbook(name, p, str(exc).split("\n")[0]) from exc


def _cell(value: Any) -> CellValue:
    """A calamine cell as a ``CellValue``: "" is None, dates and times are ISO text."""
    if value.__class__ is str:
        return value or None
    if isinstance(value, (int, float, bool)):
        return value
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _sheet_rows(
    name: str, wb: CalamineWorkbook | None, sheet: str, parsed: Any = None
) -> tuple[int, Iterator[Any], Any]:
    """(column offset, rows from row 1, the parsed sheet) of one sheet (``parsed``: already
    parsed)."""
    try:
        data = parsed if parsed is not None else wb.get_sheet_by_name(sheet)  # type: ignore[union-attr]
        start = data.start
        return (start[1] if start else 0), iter(data.iter_rows()), data
    except (CalamineError, ValueError) as exc:
        raise InputError(
            f'{name}, sheet "{sheet}" cannot be read ({exc}): open it in Excel '
            "and save it again as .xlsx"
        ) from exc


def _blank(cells: list[Any]) -> bool:
    return all(c == "" or (c.__class__ is str and c.isspace()) for c in cells)


class _WorkbookSource(Source):
    def __init__(self, info: SourceInfo, p: Path, layouts: list[_Layout]) -> None:
        super().__init__(info)
        self._path, self._layouts = p, layouts

    def rows(self) -> Iterator[RawRow]:
        return self._read(self._sheet)

    def columns(self) -> Iterator[RowColumns]:
        return self._read(self._sheet_columns)

    def _read(
        self, sheet: Callable[[str, CalamineWorkbook | None, _Layout], Iterator[_T]]
    ) -> Iterator[_T]:
        """What ``sheet`` makes of each sheet read, in order: the workbook opened again unless
        every sheet is still parsed from the probe; calamine's errors and panics as one-line
        InputErrors."""
        name = self.info.path
        try:
            with _no_panic(name, self._path):
                parsed = all(layout.parsed is not None for layout in self._layouts)
                wb = None if parsed else _load(name, self._path)
                try:
                    for layout in self._layouts:
                        yield from sheet(name, wb, layout)
                finally:
                    if wb is not None:
                        wb.close()
        except InputError as exc:
            _one_line(exc)
            raise

    def _sheet_columns(
        self, name: str, wb: CalamineWorkbook | None, layout: _Layout
    ) -> Iterator[RowColumns]:
        from importer.columnar_reader import workbook_columns  # pyarrow, only where it is used

        parsed, layout.parsed = layout.parsed, None  # read once
        rows = _sheet_rows(name, wb, layout.info.name, parsed)[1]
        del parsed  # the rows hold the sheet until they are all read
        plan = (layout.phone, layout.days, layout.header_row or 0)
        # every batch of the sheet taken first, then the sheet let go, before any is judged:
        # calamine holds every cell of it (~29 MB for 200,000 rows of three columns), its
        # batches only their phone and days cells (issue 5: the peak was the sheet and the
        # judged lines together)
        batches = list(workbook_columns(name, layout.info, layout.info.name, rows, plan, _cell))
        del rows
        give_back()
        batches.reverse()
        while batches:  # each batch let go once judged
            yield batches.pop()

    def _sheet(self, name: str, wb: CalamineWorkbook | None, layout: _Layout) -> Iterator[RawRow]:
        sheet = layout.info
        sheet.rows = sheet.blank_rows = 0
        pi, di, skip = layout.phone, layout.days, layout.header_row or 0
        parsed, layout.parsed = layout.parsed, None  # read once; a second read parses again
        _, rows, _ = _sheet_rows(name, wb, sheet.name, parsed)
        for i, cells in enumerate(rows, 1):
            if i <= skip:
                continue
            phone = cells[pi] if pi < len(cells) else ""
            if (phone == "" or (phone.__class__ is str and phone.isspace())) and _blank(cells):
                sheet.blank_rows += 1
                continue
            sheet.rows += 1
            days = None if di is None else _cell(cells[di] if di < len(cells) else "")
            yield RawRow(name, sheet.name, i, _cell(phone), days)


def _probe_sheet(
    name: str, wb: CalamineWorkbook, sheet: str, options: ReadOptions
) -> tuple[_Layout | None, str, Scan]:
    """(layout or None, why not, the scanned rows) of one sheet."""
    label = f'{name}, sheet "{sheet}"'
    offset, rows, parsed = _sheet_rows(name, wb, sheet)
    scan: Scan = []
    for i, cells in enumerate(rows, 1):
        scan.append((i, cells))
        if i >= options.header_scan_rows:
            break
    if not any(not _blank(c) for _, c in scan):
        return None, "empty", scan
    try:
        layout = _locate(label, sheet, scan, offset, options)
    except _NoPhoneColumn as exc:
        if options.sheets:
            raise
        return None, exc.why, scan
    skip = layout.header_row or 0
    layout.parsed = parsed
    for i, cells in scan:
        if i > skip and not _blank(cells):
            return layout, "", scan
    for cells in rows:
        if not _blank(cells):
            return layout, "", scan
    return None, f"no data rows below the header (row {layout.header_row})", scan


def _open_workbook(name: str, p: Path, magic: bytes, options: ReadOptions) -> Source:
    fmt = workbook_format(name, p, magic)
    wb = _load(name, p)
    layouts: list[_Layout] = []
    skipped: list[tuple[str, str]] = []
    seen: list[str] = []
    try:
        real = [m.name for m in wb.sheets_metadata]
        for wanted in options.sheets:
            if wanted not in real:
                raise InputError(
                    f'{name}: no sheet named "{wanted}"; its sheets are '
                    f"{_quoted(real)}. Name one with --sheet NAME"
                )
        for meta in wb.sheets_metadata:
            why = _skip_why(meta, options)
            if not why:
                layout, why, scan = _probe_sheet(name, wb, meta.name, options)
                if layout is not None:
                    layouts.append(layout)
                    continue
                if options.sheets:
                    raise InputError(
                        f'{name}, sheet "{meta.name}" is {why}: name another with --sheet NAME'
                        if why == "empty"
                        else f'{name}, sheet "{meta.name}" has {why}'
                    )
                seen.append(f'"{meta.name}" (headers {_quoted(_seen_headers(scan))})')
            skipped.append((meta.name, why))
    finally:
        wb.close()
    if not layouts:
        _refuse_workbook(name, skipped, seen)
    info = SourceInfo(
        name,
        sha256_file(p),
        p.stat().st_size,
        fmt,
        None,
        None,
        [lay.info for lay in layouts],
        skipped,
    )
    return _WorkbookSource(info, p, layouts)


def _skip_why(meta: Any, options: ReadOptions) -> str:
    """Why a sheet is not even looked at ("" when it is)."""
    if options.sheets:
        return "" if meta.name in options.sheets else "not asked for"
    if meta.visible != SheetVisibleEnum.Visible:
        return "hidden"
    if meta.typ != SheetTypeEnum.WorkSheet:
        return "not a worksheet"
    return ""


def _refuse_workbook(name: str, skipped: list[tuple[str, str]], seen: list[str]) -> None:
    for sheet, why in skipped:
        if why.startswith("no data rows"):
            raise InputError(
                f'{name}, sheet "{sheet}" has {why}: export it again with its '
                "rows, or remove it from the run"
            )
    raise InputError(
        f"{name}: no sheet has a phone column; sheets seen: "
        f"{', '.join(seen) or 'none visible'}. Name the column with "
        "--phone-column NAME or a position (--phone-column 2), and the sheet "
        "with --sheet NAME."
    )
