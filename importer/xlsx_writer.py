"""The streaming writer of outcomes.xlsx: a zip of a few XML parts, an Outcomes and a Summary sheet.

Not openpyxl: openpyxl's write-only mode still makes a cell object per value (~45 s per 100k
lines here), while this writes each page of rows as one string. Text is always an inline string
(no shared-strings table held in memory), whole numbers are numbers, and no formula element
(``<f>``) is ever written, so there is no way to write a formula at all. Rows and cells carry no
coordinates (readers count them; an empty cell is written ``<c/>``). The file reads back
identically with openpyxl and python-calamine (tests/test_reporter.py checks both).

Formula safety is the caller's: every text cell arrives already ``safe_cell``'d by the reporter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from operator import itemgetter
from typing import IO
from zipfile import ZIP_DEFLATED, ZipFile

from importer.model import OUTCOME_COLUMNS

NUMERIC_XLSX_COLUMNS = frozenset({"row", "part", "days_block", "batch"})

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOC = "application/vnd.openxmlformats-officedocument.spreadsheetml"
_HEAD = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_XLSX_PARTS = {
    "[Content_Types].xml": _HEAD
    + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    + '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
    + 'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
    + f'<Override PartName="/xl/workbook.xml" ContentType="{_DOC}.sheet.main+xml"/>'
    + "".join(
        f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="{_DOC}.worksheet+xml"/>'
        for n in (1, 2)
    )
    + f'<Override PartName="/xl/styles.xml" ContentType="{_DOC}.styles+xml"/></Types>',
    "_rels/.rels": _HEAD
    + f'<Relationships xmlns="{_PKG}"><Relationship Id="rId1" Type="{_REL}/officeDocument"'
    + ' Target="xl/workbook.xml"/></Relationships>',
    "xl/workbook.xml": _HEAD
    + f'<workbook xmlns="{_MAIN}" xmlns:r="{_REL}"><sheets>'
    + '<sheet name="Outcomes" sheetId="1" r:id="rId1"/>'
    + '<sheet name="Summary" sheetId="2" r:id="rId2"/></sheets></workbook>',
    "xl/_rels/workbook.xml.rels": _HEAD
    + f'<Relationships xmlns="{_PKG}">'
    + f'<Relationship Id="rId1" Type="{_REL}/worksheet" Target="worksheets/sheet1.xml"/>'
    + f'<Relationship Id="rId2" Type="{_REL}/worksheet" Target="worksheets/sheet2.xml"/>'
    + f'<Relationship Id="rId3" Type="{_REL}/styles" Target="styles.xml"/></Relationships>',
    "xl/styles.xml": _HEAD
    + f'<styleSheet xmlns="{_MAIN}"><fonts count="1"><font><sz val="11"/>'
    + '<name val="Calibri"/></font></fonts><fills count="2"><fill><patternFill '
    + 'patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill></fills>'
    + '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    + '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/>'
    + '</cellStyleXfs><cellXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"'
    + ' xfId="0"/></cellXfs><cellStyles count="1"><cellStyle name="Normal" xfId="0"'
    + ' builtinId="0"/></cellStyles></styleSheet>',
}
_EXCEL_ROWS = 1_048_576
_SHEET_START = (_HEAD + f'<worksheet xmlns="{_MAIN}"><sheetData>').encode()
_SHEET_END = b"</sheetData></worksheet>"
TEXT_CELL = '<c t="inlineStr"><is><t xml:space="preserve">{}</t></is></c>'
NUMBER_CELL = "<c><v>{}</v></c>"
_NO_NUMBER = NUMBER_CELL.format(None)
_NO_TEXT = TEXT_CELL.format("")
_XML_SPECIAL = re.compile(r"[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f]")
"""What a text cell cannot hold as it is: markup, a CR (XML reads it as LF), control chars."""
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
"""Control characters XML 1.0 cannot hold at all: written as U+FFFD (as openpyxl does)."""
_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})

# An outcome row in one str.format: text cells by position, whole numbers as numbers; a None
# number and an empty text come out as _NO_NUMBER and _NO_TEXT, replaced by empty cells.
_OUTCOME_ROW_XML = (
    "<row>"
    + "".join(
        (NUMBER_CELL if name in NUMERIC_XLSX_COLUMNS else TEXT_CELL).replace("{}", f"{{{i}}}")
        for i, name in enumerate(OUTCOME_COLUMNS)
    )
    + "</row>"
)
_TEXT_AT = [i for i, name in enumerate(OUTCOME_COLUMNS) if name not in NUMERIC_XLSX_COLUMNS]
_TEXTS = itemgetter(*_TEXT_AT)


def write_xlsx(
    raw: IO[bytes],
    pages: Iterable[list[tuple[object, ...]]],
    summary_rows: Iterable[tuple[object, ...]],
    *,
    lines: int,
) -> None:
    """Write the workbook into ``raw``: the outcome ``pages`` (rows in OUTCOME_COLUMNS order,
    already safe_cell'd) on sheet Outcomes under a header, ``summary_rows`` on sheet Summary.

    ``lines`` is how many outcome rows the pages hold (it decides Zip64).
    """
    rendered = ("".join(map(_xml_outcome_row, page)).encode() for page in pages)
    write_xlsx_xml(raw, rendered, summary_rows, lines=lines)


def write_xlsx_xml(
    raw: IO[bytes],
    outcome_rows: Iterable[bytes | memoryview],
    summary_rows: Iterable[tuple[object, ...]],
    *,
    lines: int,
) -> None:
    """``write_xlsx`` of outcome rows already written as XML: UTF-8 ``<row>`` elements exactly as
    ``write_xlsx`` writes them (``importer.columnar_reports`` writes them for whole columns)."""
    with ZipFile(raw, "w", ZIP_DEFLATED, compresslevel=1) as book:
        for name, text in _XLSX_PARTS.items():
            book.writestr(name, text)
        # Zip64 only past Excel's last row: Excel opens no more rows anyway, and an XML part
        # that big may pass the 2 GiB a plain zip entry can hold.
        big = lines >= _EXCEL_ROWS
        with book.open("xl/worksheets/sheet1.xml", "w", force_zip64=big) as sheet:
            sheet.write(_SHEET_START + _xml_row(OUTCOME_COLUMNS).encode())
            for part in outcome_rows:
                sheet.write(part)
            sheet.write(_SHEET_END)
        book.writestr(
            "xl/worksheets/sheet2.xml",
            _SHEET_START + "".join(map(_xml_row, summary_rows)).encode() + _SHEET_END,
        )


def xml_text(value: str) -> str:
    """Text as it may stand inside a ``<t>`` element (markup escaped, control characters made
    U+FFFD)."""
    if _XML_SPECIAL.search(value) is None:
        return value
    return _ILLEGAL.sub("\ufffd", value).translate(_XML_ESCAPES)


def _xml_outcome_row(row: tuple[object, ...]) -> str:
    """One outcome line (already safe_cell'd) as a <row>."""
    texts: tuple[str, ...] = _TEXTS(row)
    if _XML_SPECIAL.search("\n".join(texts)) is not None:
        cells = list(row)
        for index in _TEXT_AT:
            cells[index] = xml_text(str(cells[index]))
        row = tuple(cells)
    return _OUTCOME_ROW_XML.format(*row).replace(_NO_NUMBER, "<c/>").replace(_NO_TEXT, "<c/>")


def _xml_row(values: Iterable[object]) -> str:
    """Any row (already safe_cell'd): whole numbers as numbers, None as an empty cell, the rest
    as text."""
    cells = []
    for value in values:
        if value is None or value == "":
            cells.append("<c/>")
        elif isinstance(value, int) and not isinstance(value, bool):
            cells.append(NUMBER_CELL.format(value))
        else:
            cells.append(TEXT_CELL.format(xml_text(str(value))))
    return "<row>" + "".join(cells) + "</row>"
