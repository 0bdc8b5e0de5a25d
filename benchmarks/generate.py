"""Deterministic big inputs for the benchmarks: a CSV and an XLSX of Colombian numbers.

    python -m benchmarks.generate                      # 1,000,000-row CSV + 200,000-row XLSX
    python -m benchmarks.generate --rows 20000         # both at 20,000 rows
    python -m benchmarks.generate --csv-rows 100000 --xlsx-rows 20000

Files land in ``benchmarks/data/`` as ``numbers-<rows>.csv`` / ``numbers-<rows>.xlsx``, with
the columns ``Nombre``, ``Teléfono``, ``Días de bloqueo``. The CSV is what Spanish-locale Excel
saves as "CSV UTF-8": a BOM and ``;`` between cells. The same seed gives the same rows: the CSV
byte for byte, the XLSX cell for cell (openpyxl stamps the time into its properties).

What the rows hold (shares are of all rows, drawn per row):

- ~5% duplicates: an earlier valid number again, usually written another way;
- ~3% invalid: too short, too long, an impossible prefix, ``N/A``, ``no tiene``, blank;
- the rest valid: ~88% mobiles (``300``-``305``, ``310``-``323``, ``350``-``351``) and
  ~12% landlines (``601``-``608`` but the unassigned ``603``), written as ``3191234567``,
  ``319 123 4567``, ``+57 319 123 4567``, ``(319) 123-4567``, ``57-319-1234567``,
  ``+573191234567``, ``573191234567``;
- in the XLSX ~30% of the phone cells are numbers (``3191234567`` as an int, as Excel stores a
  number typed without an apostrophe); in the CSV the same rows are their digits.
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from openpyxl import Workbook

DATA_DIR = Path(__file__).resolve().parent / "data"
FULL_CSV_ROWS = 1_000_000
FULL_XLSX_ROWS = 200_000
HEADER = ("Nombre", "Teléfono", "Días de bloqueo")
PHONE_COLUMN = HEADER[1]
DAYS_COLUMN = HEADER[2]

DUPLICATE_SHARE = 0.05
INVALID_SHARE = 0.03
LANDLINE_SHARE = 0.12
NUMERIC_SHARE = 0.31
"""Of the non-invalid rows, so that ~30% of all phone cells are numeric in the XLSX."""

_MOBILE_PREFIXES = tuple(
    [f"30{d}" for d in range(6)] + [f"31{d}" for d in range(10)] + ["320", "321", "322", "323"]
    + ["350", "351"]
)
_LANDLINE_PREFIXES = ("601", "602", "604", "605", "606", "607", "608")  # 603 is unassigned
_DAYS = (30, 30, 60, 90, 90, 180, 365, 365, 730)
_FIRST = ("Andrés", "Beatriz", "Camilo", "Daniela", "Édgar", "Fernanda", "Germán", "Lucía",
          "María José", "Nicolás", "Óscar", "Paola", "Sebastián", "Valentina", "Yésica")
_LAST = ("Gómez", "Ramírez", "Rodríguez", "Martínez", "Peña", "Muñoz", "Castaño", "López",
         "Hernández", "Ospina", "Zuluaga", "Cárdenas", "Ibáñez", "Quiñones", "Duarte")

Cell = str | int


@dataclass(frozen=True, slots=True)
class Row:
    """One generated row: ``phone`` is an int for a numeric cell (digits in the CSV)."""

    name: str
    phone: Cell
    days: int


def _forms(national: str) -> tuple[str, ...]:
    a, b, c = national[:3], national[3:6], national[6:]
    return (
        national,
        national,
        national,
        f"{a} {b} {c}",
        f"+57 {a} {b} {c}",
        f"({a}) {b}-{c}",
        f"57-{a}-{b}{c}",
        f"+57{national}",
        f"57{national}",
    )


def _invalid(rng: random.Random) -> str:
    kind = rng.randrange(7)
    mobile = rng.choice(_MOBILE_PREFIXES) + f"{rng.randrange(10**7):07d}"
    if kind == 0:
        return mobile[: rng.randint(5, 8)]  # too short
    if kind == 1:
        return mobile + f"{rng.randrange(100):02d}"  # too long
    if kind == 2:
        return rng.choice(("306", "309", "352", "399")) + f"{rng.randrange(10**7):07d}"
    if kind == 3:
        return "N/A"
    if kind == 4:
        return "no tiene"
    if kind == 5:
        return ""
    return "1" + mobile[1:]  # no Colombian number starts with 1


def rows(count: int, seed: int = 0) -> Iterator[Row]:
    """``count`` rows, the same ones for the same ``seed``."""
    rng = random.Random(seed)
    seen: list[str] = []
    for _ in range(count):
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        days = rng.choice(_DAYS)
        draw = rng.random()
        if draw < INVALID_SHARE:
            yield Row(name, _invalid(rng), days)
            continue
        if draw < INVALID_SHARE + DUPLICATE_SHARE and seen:
            national = rng.choice(seen)
        else:
            prefixes = _LANDLINE_PREFIXES if rng.random() < LANDLINE_SHARE else _MOBILE_PREFIXES
            first = "2345678" if prefixes is _LANDLINE_PREFIXES else "0123456789"
            national = rng.choice(prefixes) + rng.choice(first) + f"{rng.randrange(10**6):06d}"
            seen.append(national)
        if rng.random() < NUMERIC_SHARE:
            yield Row(name, int(national), days)
        else:
            yield Row(name, rng.choice(_forms(national)), days)


def write_csv(path: Path, count: int, seed: int = 0) -> Path:
    """The rows as Spanish-locale Excel's "CSV UTF-8": BOM, ``;``, CRLF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8-sig", newline="") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(HEADER)
        writer.writerows((row.name, row.phone, row.days) for row in rows(count, seed))
    return path


def write_xlsx(path: Path, count: int, seed: int = 0) -> Path:
    """The rows as one sheet ``Clientes``, written with openpyxl's write-only mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    book = Workbook(write_only=True)
    sheet = book.create_sheet("Clientes")
    sheet.append(HEADER)
    for row in rows(count, seed):
        sheet.append((row.name, row.phone, row.days))
    book.save(path)
    return path


def csv_path(count: int, data_dir: Path = DATA_DIR) -> Path:
    return data_dir / f"numbers-{count}.csv"


def xlsx_path(count: int, data_dir: Path = DATA_DIR) -> Path:
    return data_dir / f"numbers-{count}.xlsx"


def ensure(kind: str, count: int, data_dir: Path = DATA_DIR, seed: int = 0) -> Path:
    """The file of ``kind`` ("csv" or "xlsx") and ``count`` rows, generated if missing."""
    path = csv_path(count, data_dir) if kind == "csv" else xlsx_path(count, data_dir)
    if path.exists():
        return path
    partial = path.with_name(path.stem + ".partial" + path.suffix)
    (write_csv if kind == "csv" else write_xlsx)(partial, count, seed)
    partial.replace(path)  # never leave a half-written file under the final name
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, help="Rows of both files (default: full sizes).")
    parser.add_argument("--csv-rows", type=int, help=f"Rows of the CSV ({FULL_CSV_ROWS:,}).")
    parser.add_argument("--xlsx-rows", type=int, help=f"Rows of the XLSX ({FULL_XLSX_ROWS:,}).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="Folder of the files.")
    parser.add_argument("--force", action="store_true", help="Rewrite files that exist.")
    args = parser.parse_args(argv)
    sizes = {
        "csv": args.csv_rows or args.rows or FULL_CSV_ROWS,
        "xlsx": args.xlsx_rows or args.rows or FULL_XLSX_ROWS,
    }
    for kind, count in sizes.items():
        if args.force:
            (csv_path if kind == "csv" else xlsx_path)(count, args.out).unlink(missing_ok=True)
        print(ensure(kind, count, args.out, args.seed))


if __name__ == "__main__":
    main()
