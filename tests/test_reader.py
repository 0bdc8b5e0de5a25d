"""The reader: the gallery of tests/data (expected readings in tests/data/expected/*.json,
written by make_gallery.py from what it put in each file), plus cases made in tmp_path."""

from __future__ import annotations

import csv
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from python_calamine import CalamineError

from importer.config import ReadOptions
from importer.errors import InputError, UsageError
from importer.model import RawRow
from importer.reader import (
    SheetInfo,
    Source,
    normalize_header,
    open_source,
    sha256_file,
)

DATA = Path(__file__).parent / "data"
CASES = sorted((DATA / "expected").glob("*.json"))


def read(path: str | Path, **options: Any) -> tuple[Source, list[RawRow]]:
    source = open_source(path, ReadOptions(**options))
    return source, list(source.rows())


def options_of(case: dict[str, Any]) -> dict[str, Any]:
    opts = dict(case.get("options", {}))
    if "sheets" in opts:
        opts["sheets"] = tuple(opts["sheets"])
    return opts


@pytest.mark.parametrize("case_file", CASES, ids=[c.stem for c in CASES])
def test_gallery(case_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = json.loads(case_file.read_text(encoding="utf-8"))
    monkeypatch.chdir(DATA)
    if "error" in case:
        with pytest.raises(InputError) as caught:
            open_source(case["input"], ReadOptions(**options_of(case)))
        assert str(caught.value) == case["error"]
        return
    source, rows = read(case["input"], **options_of(case))
    info = source.info
    assert info.path == case["input"]
    assert info.sha256 == sha256_file(DATA / case["input"])
    assert info.size == (DATA / case["input"]).stat().st_size
    for key, want in case.get("info", {}).items():
        where: Any = info if hasattr(info, key) else info.sheets[0]
        assert getattr(where, key) == want, key
    if "rows" in case:
        assert [[r.row, r.phone, r.days] for r in rows] == case["rows"]
        assert {(r.source_file, r.sheet) for r in rows} == {(case["input"], info.sheets[0].name)}
    if "sheets" in case:
        got: dict[str, list[list[Any]]] = {}
        for r in rows:
            got.setdefault(r.sheet, []).append([r.row, r.phone, r.days])
        assert got == case["sheets"]
        assert [s.name for s in info.sheets] == list(case["sheets"])
    if "skipped" in case:
        assert [list(s) for s in info.skipped_sheets] == case["skipped"]
    assert sum(s.rows for s in info.sheets) == len(rows)
    json.dumps(info.to_dict())  # JSON-ready


def test_gallery_is_complete() -> None:
    """Every input of the gallery has an expected reading (and the other way round)."""
    inputs = {p.name for p in DATA.iterdir() if p.is_file()} - {"make_gallery.py", "README.md"}
    used = {json.loads(c.read_text(encoding="utf-8"))["input"] for c in CASES}
    assert inputs == used


def test_phone_types_are_untouched_in_text() -> None:
    _, rows = read(DATA / "cp1252_spanish.csv")
    assert all(isinstance(r.phone, str) and isinstance(r.days, str) for r in rows)


def test_to_dict_reports_detection() -> None:
    source, _ = read(DATA / "sheets.xlsx")
    data = source.info.to_dict()
    assert data["format"] == "xlsx"
    assert data["skipped_sheets"] == [
        {"sheet": "Notas", "why": "no phone column"},
        {"sheet": "Config", "why": "hidden"},
        {"sheet": "Vacía", "why": "empty"},
    ]
    sheets = data["sheets"]
    assert isinstance(sheets, list)
    assert sheets[1] == {
        "name": "Más",
        "header_row": 3,
        "phone_column": "Celular",
        "days_column": "Bloqueo",
        "headers": ["Celular", "Bloqueo"],
        "rows": 1,
        "blank_rows": 0,
        "other_phone_columns": [],
    }


def test_rows_stream_and_count_as_they_go(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("Telefono;Dias\n3191234567;30\n;\n3001234567;15\n", encoding="utf-8")
    source = open_source(path, ReadOptions())
    sheet = source.info.sheets[0]
    it = source.rows()
    assert (sheet.rows, sheet.blank_rows) == (0, 0)
    assert next(it).row == 2
    assert (sheet.rows, sheet.blank_rows) == (1, 0)
    assert next(it) == RawRow(str(path), "", 4, "3001234567", "15")
    assert (sheet.rows, sheet.blank_rows) == (2, 1)
    assert list(it) == []
    assert len(list(source.rows())) == 2  # read again: counted again from zero
    assert (sheet.rows, sheet.blank_rows) == (2, 1)


# ---------------------------------------------------------------- paths


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(
        InputError,
        match=r"^.*nope\.csv: no such file: check the name and the "
        r"folder$",
    ):
        open_source(tmp_path / "nope.csv", ReadOptions())


def test_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "exports").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError) as caught:
        open_source("exports", ReadOptions())
    assert str(caught.value) == (
        "exports is a folder, not a file: name the files inside it (e.g. exports/*.csv)"
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "locked.csv"
    path.write_text("Telefono\n3191234567\n")
    path.chmod(0)
    with pytest.raises(InputError, match="cannot be read \\(permission denied\\)"):
        open_source(path, ReadOptions())


def test_unreadable_file_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PermissionError is mapped even where the tests run as root (simulated)."""
    path = tmp_path / "locked.csv"
    path.write_text("Telefono\n3191234567\n")

    def refuse(self: Path, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(InputError) as caught:
        open_source(path, ReadOptions())
    assert str(caught.value) == (
        f"{path} cannot be read (permission denied): check its "
        "permissions, or copy it somewhere you can read it"
    )
    assert isinstance(caught.value.__cause__, PermissionError)


# ---------------------------------------------------------------- text: late problems


def big_head(n: int = 3000) -> str:
    """More than 64 KiB of good rows, so that a problem after them is past the head."""
    return "Nombre;Telefono;Dias\n" + "".join(
        f"Persona numero {i};3191234567;30\n" for i in range(n)
    )


def test_late_nul_byte_is_refused_eagerly_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    path.write_bytes(big_head().encode() + b"Ana;319\x001234567;30\n")
    with pytest.raises(InputError) as caught:
        open_source(path, ReadOptions())
    assert str(caught.value) == (
        f"{path}: line 3002 contains a NUL byte: the file is damaged "
        "or not a text file; remove that line or export it again"
    )


def test_late_cp1252_byte_switches_the_whole_file_to_cp1252(tmp_path: Path) -> None:
    """The whole file is checked, not just its head: a late 'ñ' still means cp1252."""
    path = tmp_path / "late.csv"
    path.write_bytes(big_head().encode() + "Peña;3001234567;30\n".encode("cp1252"))
    source, rows = read(path)
    assert source.info.encoding == "cp1252"
    assert rows[-1] == RawRow(str(path), "", 3002, "3001234567", "30")
    assert len(rows) == 3001


def test_forced_encoding_that_fails_late_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    path.write_bytes(big_head().encode() + "Peña;3001234567;30\n".encode("cp1252"))
    source = open_source(path, ReadOptions(encoding="utf-8"))
    with pytest.raises(InputError) as caught:
        list(source.rows())
    assert str(caught.value) == (
        f"{path}: line 3002 cannot be read as utf-8: save the file "
        "again as CSV UTF-8, or force an encoding with --encoding cp1252"
    )
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


def test_bytes_neither_utf8_nor_cp1252(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes(b"Nombre;Telefono;Dias\nAna;3191234567;30\nA\x81B;3001234567;1\n")
    with pytest.raises(InputError) as caught:
        open_source(path, ReadOptions())
    assert str(caught.value) == (
        f"{path}: line 3 has bytes that are neither UTF-8 nor "
        "Windows-1252 text: save the file again as CSV UTF-8, or force "
        "an encoding with --encoding latin-1"
    )
    _, rows = read(path, encoding="latin-1")
    assert [r.phone for r in rows] == ["3191234567", "3001234567"]


def test_unclosed_quote_is_refused_not_swallowed(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    lines = ["Telefono;Notas"] + ["3001234567;x"] * 40 + ['3191234567;"abre comillas']
    lines += ["3001234567;x"] * 150
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    source = open_source(path, ReadOptions())
    with pytest.raises(InputError) as caught:
        list(source.rows())
    assert str(caught.value) == (
        f"{path}: line 42: a quoted cell runs over 151 lines: is a "
        'closing quote (") missing? Fix that line, or export the file '
        "again"
    )


def test_quote_problem_in_the_head_is_refused_eagerly(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('Telefono;Notas\n3191234567;"abre\n' + "3001234567;x\n" * 150)
    with pytest.raises(InputError, match=r"line 2: a quoted cell runs over 151 lines"):
        open_source(path, ReadOptions())


def test_huge_field_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text(
        "Telefono\n" + "3191234567\n" * 40 + '"' + "x" * 200_000 + '"\n', encoding="utf-8"
    )
    source = open_source(path, ReadOptions())
    with pytest.raises(InputError, match=r"line 42: field larger than field limit") as caught:
        list(source.rows())
    assert isinstance(caught.value.__cause__, csv.Error)


# ---------------------------------------------------------------- text: detection


@pytest.mark.parametrize(
    ("delimiter", "name"), [(",", "a.csv"), (";", "a.csv"), ("\t", "a.tsv"), ("|", "a.txt")]
)
def test_delimiter_sniffed_despite_decimal_commas(
    tmp_path: Path, delimiter: str, name: str
) -> None:
    path = tmp_path / name
    rows = [["Teléfono", "Días", "Saldo"], ["3191234567", "30", "1,5"], ["3001234567", "7", "2"]]
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    source, got = read(path)
    assert source.info.delimiter == delimiter
    assert [(r.phone, r.days) for r in got] == [("3191234567", "30"), ("3001234567", "7")]


def test_forced_delimiter_wins(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("Telefono|x\n3191234567,30|1\n", encoding="utf-8")
    for delimiter, phone in ((",", "Telefono|x"), ("|", "Telefono")):
        source = open_source(path, ReadOptions(delimiter=delimiter, no_header=True))
        assert source.info.delimiter == delimiter
        assert next(source.rows()).phone == phone
    source = open_source(path, ReadOptions(delimiter="tab", no_header=True))
    assert source.info.delimiter == "\t"


def test_no_header_with_positions(tmp_path: Path) -> None:
    path = tmp_path / "bare.csv"
    path.write_text("x;3191234567;30\n\ny;3001234567;\n", encoding="utf-8")
    source, rows = read(path, no_header=True, phone_column="2", days_column="3")
    assert [(r.row, r.phone, r.days) for r in rows] == [
        (1, "3191234567", "30"),
        (3, "3001234567", ""),
    ]
    assert source.info.sheets[0] == SheetInfo("", None, "column 2", "column 3", [], 2, 1)


def test_short_rows_give_empty_text(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("Nombre,Telefono,Dias\nAna\nBea,3191234567\n", encoding="utf-8")
    _, rows = read(path)
    assert [(r.row, r.phone, r.days) for r in rows] == [(2, "", ""), (3, "3191234567", "")]


def test_title_rows_beyond_scan_are_not_searched(tmp_path: Path) -> None:
    path = tmp_path / "deep.csv"
    path.write_text("titulo\n" * 5 + "Telefono\n3191234567\n", encoding="utf-8")
    with pytest.raises(InputError, match='no phone column found; headers seen: "titulo"'):
        open_source(path, ReadOptions(header_scan_rows=5))
    assert read(path, header_scan_rows=6)[0].info.sheets[0].header_row == 6


# ---------------------------------------------------------------- option errors


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"phone_column": "0"}, "--phone-column 0: positions start at 1 (column A is 1)"),
        (
            {"no_header": True, "days_column": "Dias"},
            (
                "--days-column Dias: with --no-header there are no header names; give a position "
                "(--days-column 2)"
            ),
        ),
        (
            {"delimiter": ";;"},
            "--delimiter ';;': give one character, e.g. --delimiter ';' (or 'tab')",
        ),
        (
            {"encoding": "klingon"},
            "--encoding klingon: unknown encoding; use e.g. utf-8, cp1252 or latin-1",
        ),
    ],
)
def test_bad_options_are_usage_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        open_source(DATA / "utf8_comma.csv", ReadOptions(**options))
    assert str(caught.value) == message


def test_position_beyond_the_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA)
    with pytest.raises(InputError) as caught:
        open_source("utf8_comma.csv", ReadOptions(phone_column="7"))
    assert str(caught.value) == (
        "utf8_comma.csv: --phone-column 7: there is no column 7; the columns in use are 1 to 3"
    )


def test_phone_column_name_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DATA)
    with pytest.raises(InputError) as caught:
        open_source("utf8_comma.csv", ReadOptions(phone_column="Móvil"))
    assert str(caught.value) == (
        'utf8_comma.csv: --phone-column "Móvil": no such column in the '
        'first 30 rows; headers seen: "Nombre", "Teléfono", "Días"'
    )


def test_phone_and_days_the_same_column() -> None:
    with pytest.raises(UsageError, match="the phone and days columns are the same column"):
        open_source(DATA / "utf8_comma.csv", ReadOptions(days_column="2"))


def test_unknown_sheet_option_lists_names_and_applies_to_each_workbook() -> None:
    with pytest.raises(
        InputError,
        match=r'no sheet named "Clientes"; its sheets are "Hoja1", '
        r'"Oculta"\. Name one with --sheet NAME$',
    ):
        open_source(DATA / "legacy.xls", ReadOptions(sheets=("Clientes",)))


# ---------------------------------------------------------------- workbooks


def test_workbook_error_maps_calamine_exception(tmp_path: Path) -> None:
    """A zip that has the workbook's names but is damaged inside: calamine's error, mapped."""
    path = tmp_path / "broken.xlsx"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("xl/workbook.xml", "<not xml")
        z.writestr("[Content_Types].xml", "<nope")
    with pytest.raises(
        InputError,
        match=r"^.*broken\.xlsx is not a valid Excel workbook \(.+\): "
        r"open it in Excel and save it again as \.xlsx$",
    ) as caught:
        open_source(path, ReadOptions())
    assert isinstance(caught.value.__cause__, CalamineError)


def test_damaged_zip_maps_zipfile_exception() -> None:
    with pytest.raises(InputError) as caught:
        open_source(DATA / "garbage.xlsx", ReadOptions())
    assert isinstance(caught.value.__cause__, zipfile.BadZipFile)


def test_workbook_sheet_without_phones_named_by_days(tmp_path: Path) -> None:
    """--days-column NAME finds the header row even when the phone header is unknown."""
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Informe"])
    ws.append(["Contacto", "Plazo"])
    ws.append([3191234567, 30])
    wb.save(tmp_path / "w.xlsx")
    source, rows = read(tmp_path / "w.xlsx", phone_column="1", days_column="plazo")
    assert source.info.sheets[0].header_row == 2
    assert [(r.row, r.phone, r.days) for r in rows] == [(3, 3191234567.0, 30.0)]


def test_xlsm_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "macro.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(["Telefono"])
    wb.active.append(["3191234567"])
    wb.save(path)
    with zipfile.ZipFile(path, "a") as z:
        z.writestr("xl/vbaProject.bin", b"\x00")
    assert open_source(path, ReadOptions()).info.format == "xlsm"


# ---------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        (" Teléfono_Móvil: ", "telefono movil"),
        ("DAYS_BLOCK", "days block"),
        ("Nro. Teléfono", "nro telefono"),
        ("Días-de-bloqueo", "dias de bloqueo"),
        ("\ufeffTel.", "tel"),
        ("Nº  celular", "no celular"),
        ("", ""),
    ],
)
def test_normalize_header(text: str, normal: str) -> None:
    assert normalize_header(text) == normal


@pytest.mark.parametrize(
    ("headers", "phone", "days"),
    [
        (["Cédula", "Teléfono 1", "Días"], "Teléfono 1", "Días"),
        (
            ["Numero de cedula", "Celular cliente", "Bloqueo (días)"],
            "Celular cliente",
            "Bloqueo (días)",
        ),
        (["Teléfono fijo", "Celular"], "Celular", None),  # an exact name beats a prefix
        (["WhatsApp", "Dias Bloqueo"], "WhatsApp", "Dias Bloqueo"),
        (["Número", "Teléfono", "DAYS_BLOCK"], "Teléfono", "DAYS_BLOCK"),  # "Número": last resort
        (["Número", "Nombre"], "Número", None),
    ],
)
def test_header_matching(tmp_path: Path, headers: list[str], phone: str, days: str | None) -> None:
    path = tmp_path / "h.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([headers, ["1"] * len(headers)])
    info = open_source(path, ReadOptions()).info.sheets[0]
    assert (info.phone_column, info.days_column) == (phone, days)


# ---------------------------------------------------------------- sample_data


def test_sample_data_reads_as_its_readme_says() -> None:
    root = Path(__file__).parent.parent / "sample_data"
    csv_source, csv_rows = read(root / "clientes_bogota.csv")
    assert (csv_source.info.encoding, csv_source.info.delimiter) == ("cp1252", ";")
    sheet = csv_source.info.sheets[0]
    assert (sheet.header_row, sheet.phone_column, sheet.days_column) == (
        3,
        "Teléfono",
        "Días de bloqueo",
    )
    assert (sheet.rows, sheet.blank_rows) == (39, 1)
    assert (csv_rows[0].row, csv_rows[-1].row) == (4, 43)
    xlsx_source, xlsx_rows = read(root / "crm_export.xlsx")
    assert xlsx_source.info.skipped_sheets == [("Config", "hidden"), ("Notas", "no phone column")]
    assert (xlsx_source.info.sheets[0].rows, xlsx_source.info.sheets[0].blank_rows) == (12, 1)
    assert xlsx_rows[0] == RawRow(str(root / "crm_export.xlsx"), "Clientes", 4, 3201234567.0, 30.0)
    assert xlsx_rows[2].phone == "3211234567\n3221234567"


@pytest.mark.parametrize("name", ["README.md", "make.py", "notes.json"])
def test_a_file_that_is_not_a_spreadsheet_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("telefono,dias\n3191234567,15\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        open_source(path, ReadOptions())
    suffix = Path(name).suffix
    assert str(err.value) == (
        f"{path} is not a spreadsheet ({suffix} file): give .csv, .tsv, .txt, .xlsx, "
        ".xlsm, .xls or .ods files (rename a CSV export to .csv)"
    )


def test_a_text_file_without_suffix_is_read(tmp_path: Path) -> None:
    path = tmp_path / "export"
    path.write_text("telefono,dias\n3191234567,15\n", encoding="utf-8")
    rows = list(open_source(path, ReadOptions()).rows())
    assert [(r.row, r.phone, r.days) for r in rows] == [(2, "3191234567", "15")]


def test_an_ods_cut_short_is_refused_not_read_for_ever(tmp_path: Path) -> None:
    """calamine loops on a content.xml that stops mid-document (a truncated download)."""
    source = zipfile.ZipFile(DATA / "calc.ods")
    cut = tmp_path / "cut.ods"
    with zipfile.ZipFile(cut, "w", zipfile.ZIP_DEFLATED) as out:
        for name in source.namelist():
            data = source.read(name)
            out.writestr(
                name, data[: data.index(b"<table:table-row>")] if name == "content.xml" else data
            )
    with pytest.raises(InputError, match="content.xml. is cut short"):
        open_source(cut, ReadOptions())
    assert len(list(open_source(DATA / "calc.ods", ReadOptions()).rows())) == 2
