"""Regenerate the reader's gallery of nasty inputs and their expected readings.

    .venv/bin/python tests/data/make_gallery.py

Every input is written by a real library (csv + codecs, openpyxl, xlwt, pandas/odfpy), and
every expected reading (``expected/<input>.json``) is written from what this script put in the
file, never from what the reader makes of it. The output is byte-for-byte deterministic: zip
members get a fixed timestamp and workbook properties a fixed date.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import xlwt

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "expected"
FIXED = dt.datetime(2024, 1, 1, 0, 0, 0)

Cell = Any
Row = list[Cell]
Case = dict[str, Any]
"""What reading ``input`` (default: the case name) with ``options`` (ReadOptions keywords) gives:
either ``error`` (the exact InputError text), or ``info`` (SourceInfo fields, and fields of its
first SheetInfo), ``rows`` ([row, phone, days] of every row) or ``sheets`` ({sheet: rows}), and
``skipped`` ([sheet, why] of skipped_sheets)."""


# ------------------------------------------------------------------ writers


def write_bytes(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


def write_text(path: Path, rows: list[Row], encoding: str, delimiter: str,
               prefix: str = "") -> None:
    buf = io.StringIO()
    buf.write(prefix)
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))


def deterministic_zip(path: Path) -> None:
    """Rewrite a zip with fixed member timestamps, same order and compression."""
    with zipfile.ZipFile(path) as z:
        members = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w") as out:
        for info, data in members:
            if info.filename == "docProps/core.xml":  # openpyxl stamps the save time
                data = re.sub(rb"(<dcterms:modified[^>]*>)[^<]*", rb"\g<1>2024-01-01T00:00:00Z",
                              data)
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED.timetuple()[:6])
            fixed.compress_type = info.compress_type
            fixed.external_attr = 0o644 << 16
            out.writestr(fixed, data)


def save_openpyxl(wb: openpyxl.Workbook, path: Path) -> None:
    wb.properties.created = FIXED
    wb.properties.modified = FIXED
    wb.save(path)
    deterministic_zip(path)


def sheet_rows(ws: Any, rows: list[Row], top: int = 1, left: int = 1) -> None:
    for r, values in enumerate(rows):
        for c, value in enumerate(values):
            if value is not None:
                ws.cell(row=top + r, column=left + c, value=value)


def patch_member(path: Path, member: str, old: bytes, new: bytes) -> None:
    """Replace bytes inside one zip member (e.g. to give a formula a cached value)."""
    with zipfile.ZipFile(path) as z:
        members = [(info, z.read(info)) for info in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in members:
            if info.filename == member:
                assert old in data, (member, old)
                data = data.replace(old, new)
            out.writestr(info, data)


# ------------------------------------------------------------------ text cases


def text_cases() -> dict[str, tuple[Callable[[Path], None], Case]]:
    cases: dict[str, tuple[Callable[[Path], None], Case]] = {}

    def add(name: str, write: Callable[[Path], None], case: Case) -> None:
        cases[name] = (write, case)

    rows = [["Nombre", "Teléfono", "Días"], ["Ana", "3191234567", "30"],
            ["Bea", "+57 300 123 4567", "15"]]
    add("utf8_comma.csv", lambda p: write_text(p, rows, "utf-8", ","), {
        "info": {"format": "csv", "encoding": "utf-8", "delimiter": ",", "header_row": 1,
                 "phone_column": "Teléfono", "days_column": "Días"},
        "rows": [[2, "3191234567", "30"], [3, "+57 300 123 4567", "15"]]})
    add("utf8_bom_semicolon.csv", lambda p: write_text(p, rows, "utf-8-sig", ";"), {
        "info": {"encoding": "utf-8-sig", "delimiter": ";", "phone_column": "Teléfono"},
        "rows": [[2, "3191234567", "30"], [3, "+57 300 123 4567", "15"]]})
    # Spanish-locale Excel: cp1252, ';', two title rows padded with ';', decimal commas,
    # a blank ';;;' row and a quoted cell running over two lines.
    spanish = [["Reporte de clientes - No llamar", "", "", ""], ["Fecha: 15/03/2024", "", "", ""],
               ["Nombre", "Cédula", "Teléfono Móvil", "Días de bloqueo"],
               ["José Peña", "1020304050", "3191234567", "30"], ["", "", "", ""],
               ["María\nLópez", "52123456", "3,19123E+09", "15,5"],
               ["Ñoño", "", "", "90"]]
    add("cp1252_spanish.csv", lambda p: write_text(p, spanish, "cp1252", ";"), {
        "info": {"encoding": "cp1252", "delimiter": ";", "header_row": 3,
                 "phone_column": "Teléfono Móvil", "days_column": "Días de bloqueo",
                 "headers": ["Nombre", "Cédula", "Teléfono Móvil", "Días de bloqueo"],
                 "rows": 3, "blank_rows": 1},
        "rows": [[4, "3191234567", "30"], [6, "3,19123E+09", "15,5"], [8, "", "90"]]})
    tab = [["phone", "days_block", "note"], ["3001234567", "7", "a\tb"], ["0057 310 987 6543", "", ""]]
    add("tab.tsv", lambda p: write_text(p, tab, "utf-8", "\t"), {
        "info": {"delimiter": "\t", "phone_column": "phone", "days_column": "days_block"},
        "rows": [[2, "3001234567", "7"], [3, "0057 310 987 6543", ""]]})
    pipe = [["id", "celular", "bloqueo"], ["1", "(319) 123-4567", "60"], ["2", "  0319123  ", " 5 "]]
    add("pipe.txt", lambda p: write_text(p, pipe, "utf-8", "|"), {
        "info": {"delimiter": "|", "phone_column": "celular", "days_column": "bloqueo"},
        "rows": [[2, "(319) 123-4567", "60"], [3, "  0319123  ", " 5 "]]})
    multi = [["Notas", "Tel", "Dias"], ["una\nnota\nlarga", "3001112233", "30"],
             ["", "3002223344", "31"], ["x\r\ny", "3003334455", "32"]]
    add("multiline_cells.csv", lambda p: write_text(p, multi, "utf-8", ","), {
        "info": {"header_row": 1},
        "rows": [[2, "3001112233", "30"], [5, "3002223344", "31"], [6, "3003334455", "32"]]})
    bare = [["3191234567"], ["3001234567, 3109876543"], [""], ["  "], ["3,19E+09"]]
    add("one_column.txt", lambda p: write_text(p, bare, "utf-8", ","), {
        "options": {"no_header": True},
        "info": {"delimiter": None, "header_row": None, "phone_column": "column 1",
                 "days_column": None, "headers": [], "blank_rows": 2},
        "rows": [[1, "3191234567", None], [2, "3001234567, 3109876543", None],
                 [5, "3,19E+09", None]]})
    hint = [["Telefono", "Dias"], ["3191234567", "30"]]
    add("sep_hint.csv", lambda p: write_text(p, hint, "utf-8", "|", prefix="sep=|\r\n"), {
        "info": {"delimiter": "|", "header_row": 2}, "rows": [[3, "3191234567", "30"]]})
    utf16 = [["Nombre", "Teléfono", "Días"], ["Ana", "3191234567", "30"]]
    add("excel_unicode_text.txt", lambda p: write_text(p, utf16, "utf-16", "\t"), {
        "info": {"encoding": "utf-16", "delimiter": "\t"}, "rows": [[2, "3191234567", "30"]]})
    two_phones = [["Nombre", "Teléfono", "Celular", "Días"], ["Ana", "6012345678", "3191234567", "9"]]
    add("two_phone_columns.csv", lambda p: write_text(p, two_phones, "utf-8", ","), {
        "info": {"phone_column": "Teléfono", "other_phone_columns": ["Celular"]},
        "rows": [[2, "6012345678", "9"]]})
    add("override_by_name", lambda p: write_text(p, two_phones, "utf-8", ","), {
        "input": "two_phone_columns.csv",
        "options": {"phone_column": "CELULAR", "days_column": "dias"},
        "info": {"phone_column": "Celular", "days_column": "Días"},
        "rows": [[2, "3191234567", "9"]]})
    add("override_by_position", lambda p: write_text(p, two_phones, "utf-8", ","), {
        "input": "two_phone_columns.csv",
        "options": {"phone_column": "3", "days_column": "4"},
        "info": {"phone_column": "Celular", "days_column": "Días", "header_row": 1},
        "rows": [[2, "3191234567", "9"]]})
    unknown = [["Reporte", "", ""], ["Cliente", "Contacto", "Plazo"], ["Ana", "3191234567", "9"]]
    add("position_unknown_headers.csv", lambda p: write_text(p, unknown, "utf-8", ";"), {
        "options": {"phone_column": "2", "days_column": "3"},
        "info": {"phone_column": "Contacto", "days_column": "Plazo", "header_row": 2},
        "rows": [[3, "3191234567", "9"]]})
    no_phone = [["Nombre", "Cédula", "Ciudad"], ["Ana", "1020304050", "Bogotá"]]
    add("no_phone_column.csv", lambda p: write_text(p, no_phone, "cp1252", ";"), {
        "error": 'no_phone_column.csv: no phone column found; headers seen: "Nombre", '
                 '"Cédula", "Ciudad". Name it with --phone-column NAME or a position '
                 "(--phone-column 2)."})
    add("header_only.csv", lambda p: write_text(p, [["Titulo"], ["Telefono", "Dias"], ["", ""]],
                                                "utf-8", ","), {
        "error": "header_only.csv has no data rows below the header (row 2): export it again with its rows, or remove it from the run"})
    add("empty.csv", write_bytes(b""), {
        "error": "empty.csv is empty (0 bytes): export it again with its rows"})
    add("blank_lines.csv", write_bytes(b"\r\n;;\r\n  \r\n"), {
        "error": "blank_lines.csv has no rows (only blank lines): export it again"})
    add("binary.csv", write_bytes(bytes(range(256)) * 4), {
        "error": "binary.csv looks like a binary file, not a spreadsheet or a text (CSV) "
                 "file: export it again as .csv or .xlsx"})
    mixed = "Teléfono;Días\r\n3191234567;30\r\n".encode() + "Peña;3001234567\r\n".encode("cp1252")
    add("mixed_encoding.csv", write_bytes(mixed), {
        "error": "mixed_encoding.csv: line 3 is not UTF-8 while lines before it are: the file "
                 "mixes encodings; save it again as UTF-8, or force one with --encoding cp1252"})
    add("text_named.xlsx", lambda p: write_text(p, hint, "utf-8", ","), {
        "error": "text_named.xlsx is not a valid Excel workbook (it is neither a zip nor an "
                 "OLE2 file): open it in Excel and save it again as .xlsx"})
    return cases


# ------------------------------------------------------------------ workbook cases


def write_numeric_xlsx(p: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Clientes"
    sheet_rows(ws, [["Exportación CRM", None, None, None], [None] * 4,
                    ["Nombre", "Teléfono", "Días bloqueo", "Alta"],
                    ["Ana", 3191234567, 30, dt.date(2024, 3, 1)],
                    ["Bea", "3001234567", 15.5, None],
                    [None, None, None, None],
                    ["Sin teléfono", None, 10, None],
                    ["Fecha", dt.datetime(2024, 1, 2, 3, 4, 5), True, None],
                    ["Texto", "0057-319-1234567\n3109876543", "noventa", None]])
    save_openpyxl(wb, p)


def write_formula_xlsx(p: Path) -> None:
    """openpyxl writes no cached values; the cache is patched into the sheet XML."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Hoja1"
    sheet_rows(ws, [["Telefono", "Dias"], [3191234567, 30], ["=A2+1", "=B2*2"]])
    save_openpyxl(wb, p)
    patch_member(p, "xl/worksheets/sheet1.xml", b"<f>A2+1</f><v />",
                 b"<f>A2+1</f><v>3191234568</v>")
    patch_member(p, "xl/worksheets/sheet1.xml", b"<f>B2*2</f><v />", b"<f>B2*2</f><v>60</v>")
    deterministic_zip(p)


def write_sheets_xlsx(p: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Clientes"
    sheet_rows(ws, [["Telefono", "Dias"], [3191234567, 30]])
    notas = wb.create_sheet("Notas")
    sheet_rows(notas, [["Tema", "Texto"], ["Llamar", "no"]])
    config = wb.create_sheet("Config")
    sheet_rows(config, [["Telefono"], [3000000000]])
    config.sheet_state = "hidden"
    wb.create_sheet("Vacía")
    mas = wb.create_sheet("Más")
    sheet_rows(mas, [["Celular", "Bloqueo"], ["310 987 6543", 60]], top=3, left=3)
    save_openpyxl(wb, p)


def write_no_phone_xlsx(p: Path) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Datos"
    sheet_rows(ws, [["Nombre", "Ciudad"], ["Ana", "Cali"]])
    save_openpyxl(wb, p)


def write_header_only_xlsx(p: Path) -> None:
    wb = openpyxl.Workbook()
    sheet_rows(wb.active, [["Titulo"], ["Telefono", "Dias"]])
    save_openpyxl(wb, p)


def write_xls(p: Path) -> None:
    wb = xlwt.Workbook()
    ws = wb.add_sheet("Hoja1")
    rows: list[Row] = [["Listado"], [], ["Teléfono", "Días"], [3191234567, 30],
                       ["300 123 4567", 7.0]]
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            ws.write(r, c, value)
    hidden = wb.add_sheet("Oculta")
    hidden.write(0, 0, "Telefono")
    hidden.write(1, 0, 3000000000)
    hidden.visibility = 1
    wb.save(str(p))


def write_ods(p: Path) -> None:
    frame = pd.DataFrame({"Móvil": [3191234567, "310-987-6543"], "Días": [30, 1.5]})
    frame.to_excel(p, engine="odf", index=False, sheet_name="Contactos")  # type: ignore[arg-type]
    deterministic_zip(p)


def workbook_cases() -> dict[str, tuple[Callable[[Path], None], Case]]:
    return {
        "numeric.xlsx": (write_numeric_xlsx, {
            "info": {"format": "xlsx", "encoding": None, "delimiter": None, "header_row": 3,
                     "phone_column": "Teléfono", "days_column": "Días bloqueo",
                     "headers": ["Nombre", "Teléfono", "Días bloqueo", "Alta"],
                     "rows": 5, "blank_rows": 1},
            "rows": [[4, 3191234567.0, 30.0], [5, "3001234567", 15.5], [7, None, 10.0],
                     [8, "2024-01-02T03:04:05", True],
                     [9, "0057-319-1234567\n3109876543", "noventa"]]}),
        "formula_cached.xlsx": (write_formula_xlsx, {
            "rows": [[2, 3191234567.0, 30.0], [3, 3191234568.0, 60.0]]}),
        "sheets.xlsx": (write_sheets_xlsx, {
            "sheets": {"Clientes": [[2, 3191234567.0, 30.0]], "Más": [[4, "310 987 6543", 60.0]]},
            "skipped": [["Notas", "no phone column"], ["Config", "hidden"], ["Vacía", "empty"]]}),
        "sheets_named": (write_sheets_xlsx, {"input": "sheets.xlsx",
            "options": {"sheets": ["Config"]},
            "sheets": {"Config": [[2, 3000000000.0, None]]},
            "skipped": [["Clientes", "not asked for"], ["Notas", "not asked for"],
                        ["Vacía", "not asked for"], ["Más", "not asked for"]]}),
        "sheets_position": (write_sheets_xlsx, {"input": "sheets.xlsx",
            "options": {"sheets": ["Más"], "phone_column": "3", "days_column": "4"},
            "sheets": {"Más": [[4, "310 987 6543", 60.0]]}}),
        "sheets_missing": (write_sheets_xlsx, {"input": "sheets.xlsx",
            "options": {"sheets": ["Clientes", "Bogota"]},
            "error": 'sheets.xlsx: no sheet named "Bogota"; its sheets are "Clientes", '
                     '"Notas", "Config", "Vacía", "Más". Name one with --sheet NAME'}),
        "sheets_no_phone_named": (write_sheets_xlsx, {"input": "sheets.xlsx",
            "options": {"sheets": ["Notas"]},
            "error": 'sheets.xlsx, sheet "Notas": no phone column found; headers seen: '
                     '"Tema", "Texto". Name it with --phone-column NAME or a position '
                     "(--phone-column 2)."}),
        "no_phone.xlsx": (write_no_phone_xlsx, {
            "error": 'no_phone.xlsx: no sheet has a phone column; sheets seen: "Datos" '
                     '(headers "Nombre", "Ciudad"). Name the column with --phone-column NAME '
                     "or a position (--phone-column 2), and the sheet with --sheet NAME."}),
        "header_only.xlsx": (write_header_only_xlsx, {
            "error": 'header_only.xlsx, sheet "Sheet" has no data rows below the header (row 2): export it again with its rows, or remove it from the run'}),
        "legacy.xls": (write_xls, {
            "info": {"format": "xls", "header_row": 3, "phone_column": "Teléfono"},
            "rows": [[4, 3191234567.0, 30.0], [5, "300 123 4567", 7.0]],
            "skipped": [["Oculta", "hidden"]]}),
        "calc.ods": (write_ods, {
            "info": {"format": "ods", "phone_column": "Móvil", "days_column": "Días"},
            "rows": [[2, 3191234567.0, 30.0], [3, "310-987-6543", 1.5]]}),
    }


def copy_cases() -> dict[str, tuple[Callable[[Path], None], Case]]:
    """Files whose name lies about their content."""
    def garbage(p: Path) -> None:
        p.write_bytes(b"PK\x03\x04" + bytes(range(200)))

    def zip_no_sheet(p: Path) -> None:
        with zipfile.ZipFile(p, "w") as z:
            z.writestr(zipfile.ZipInfo("hola.txt", FIXED.timetuple()[:6]), "hola")

    return {
        "really_xlsx.csv": (write_sheets_xlsx, {
            "info": {"format": "xlsx"},
            "sheets": {"Clientes": [[2, 3191234567.0, 30.0]], "Más": [[4, "310 987 6543", 60.0]]}}),
        "garbage.xlsx": (garbage, {
            "error": "garbage.xlsx is not a valid Excel workbook (a damaged zip archive): open "
                     "it in Excel and save it again as .xlsx"}),
        "zip_without_sheet.xlsx": (zip_no_sheet, {
            "error": "zip_without_sheet.xlsx is not a valid Excel workbook (a zip archive "
                     "without a spreadsheet in it): open it in Excel and save it again as .xlsx"}),
    }


def main() -> None:
    EXPECTED.mkdir(exist_ok=True)
    for old in EXPECTED.glob("*.json"):
        old.unlink()
    cases = {**text_cases(), **workbook_cases(), **copy_cases()}
    for name, (write, case) in sorted(cases.items()):
        case.setdefault("input", name)
        write(HERE / case["input"])
        text = json.dumps(case, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
        (EXPECTED / f"{name}.json").write_text(text, encoding="utf-8")
    print(f"wrote {len(cases)} inputs and their expected readings to {HERE}")


if __name__ == "__main__":
    main()
