"""Find the header row and the phone and days columns among the first rows of a sheet.

The reader scans the first ``header_scan_rows`` rows of a text file or a workbook sheet
(``Scan``) and ``_locate`` finds there, by known header names (``PHONE_NAMES``, ``DAYS_NAMES``,
compared by ``normalize_header``) or by the ``--phone-column``/``--days-column`` options, where
the rows to read are (``_Layout``). A sheet without a phone column raises ``_NoPhoneColumn``,
whose message lists the headers seen and names the option to use.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from importer.config import ReadOptions
from importer.errors import InputError, UsageError
from importer.source import SheetInfo

__all__ = ["DAYS_NAMES", "PHONE_NAMES", "Scan", "normalize_header"]

_NON_WORD = re.compile(r"[\W_]+")

PHONE_NAMES: frozenset[str] = frozenset(
    {
        "telephone",
        "telefono",
        "telefonos",
        "tel",
        "telf",
        "tfno",
        "tlf",
        "phone",
        "phone number",
        "phone no",
        "mobile",
        "mobile phone",
        "mobile number",
        "cell",
        "cell phone",
        "cellphone",
        "celular",
        "celulares",
        "cel",
        "movil",
        "numero",
        "numero de telefono",
        "numero telefono",
        "numero de celular",
        "numero celular",
        "numero movil",
        "numero de movil",
        "whatsapp",
        "contacto telefono",
        "telefono contacto",
        "telefono de contacto",
        "telefono celular",
        "telefono movil",
        "nro telefono",
        "nro de telefono",
        "nro celular",
        "num telefono",
        "no telefono",
        "no de telefono",
        "n telefono",
        "msisdn",
    }
)
"""Known phone headers, normalized. Exact matches win over prefix matches ("telefono 1")."""
_WEAK_NAMES = frozenset({"numero"})
_PHONE_PREFIXES = tuple(n + " " for n in PHONE_NAMES if n not in _WEAK_NAMES)
DAYS_NAMES: frozenset[str] = frozenset(
    {
        "days block",
        "days",
        "dias",
        "dias de bloqueo",
        "dias bloqueo",
        "dias bloqueado",
        "dias bloqueados",
        "dias a bloquear",
        "block days",
        "blocking days",
        "days blocked",
        "bloqueo",
        "bloqueo dias",
        "bloqueo en dias",
        "dias dnc",
        "dnc days",
        "vigencia",
        "vigencia dias",
        "duracion bloqueo",
        "duracion del bloqueo",
    }
)
"""Known days headers, normalized."""
_DAYS_PREFIXES = tuple(n + " " for n in DAYS_NAMES if " " in n) + ("bloqueo ",)


def normalize_header(text: str) -> str:
    """Fold case, accents and punctuation: ``normalize_header(" Teléfono_Móvil: ")`` is
    ``"telefono movil"``."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return _NON_WORD.sub(" ", bare).strip()


def _position(spec: str | None) -> int | None:
    if spec is None or not spec.strip().lstrip("-").isdigit():
        return None
    return int(spec.strip())


_LISTED = 20
"""Names listed in a message at most (a header row may have 16,384 cells)."""


def _quoted(names: Iterable[str]) -> str:
    listed = list(names)
    shown = [f'"{n[:40]}..."' if len(n) > 40 else f'"{n}"' for n in listed[:_LISTED]]
    more = f" and {len(listed) - _LISTED:,} more" if len(listed) > _LISTED else ""
    return ", ".join(shown) + more or "none"


@dataclass
class _Layout:
    header_row: int | None  # 1-based, absolute
    phone: int  # index into a row's cells
    days: int | None
    info: SheetInfo
    parsed: Any = None
    """A workbook sheet as calamine parsed it to find the header, kept for one read of its
    rows: parsing a sheet is most of reading it (~1.2 s for 200,000 rows here)."""


Scan = list[tuple[int, list[Any]]]
"""The first rows of a sheet: (1-based row number, cells)."""


def _texts(cells: list[Any]) -> list[str]:
    return [c.strip() if isinstance(c, str) else "" for c in cells]


def _seen_headers(scan: Scan) -> list[str]:
    """The non-empty text cells of the row that looks most like a header."""
    best: list[str] = []
    for _, cells in scan:
        texts = [t for t in _texts(cells) if t]
        if len(texts) > len(best):
            best = texts
    return best


def _match(
    texts: list[str], names: frozenset[str], prefixes: tuple[str, ...], exclude: int | None = None
) -> list[int]:
    """Indexes of the cells naming a known column: exact names first, then prefixes."""
    norm = [normalize_header(t) for t in texts]
    exact = [i for i, n in enumerate(norm) if n in names and i != exclude]
    exact.sort(key=lambda i: norm[i] in _WEAK_NAMES)  # "Número" may be an id: last resort
    fuzzy = [i for i, n in enumerate(norm) if n.startswith(prefixes) and i != exclude]
    return exact + [i for i in fuzzy if i not in exact]


def _find_named(scan: Scan, name: str) -> tuple[int, int] | None:
    wanted = normalize_header(name)
    for row, cells in scan:
        for i, t in enumerate(_texts(cells)):
            if t and normalize_header(t) == wanted:
                return row, i
    return None


class _NoPhoneColumn(InputError):
    """No phone column in a sheet; ``why`` is the short form for ``skipped_sheets``."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def _no_phone(label: str, scan: Scan) -> _NoPhoneColumn:
    return _NoPhoneColumn(
        f"{label}: no phone column found; headers seen: {_quoted(_seen_headers(scan))}. "
        "Name it with --phone-column NAME or a position (--phone-column 2).",
        "no phone column",
    )


def _locate(label: str, sheet: str, scan: Scan, col_offset: int, options: ReadOptions) -> _Layout:
    """Find the header row and the phone/days columns among the first rows of a sheet."""
    width = max((len(c) for _, c in scan), default=0)

    def index(flag: str, pos: int) -> int:
        i = pos - 1 - col_offset
        if not 0 <= i < width:
            raise _NoPhoneColumn(
                f"{label}: {flag} {pos}: there is no column {pos}; the columns in use are "
                f"{col_offset + 1} to {col_offset + width}",
                f"no column {pos}",
            )
        return i

    def name(i: int | None, texts: list[str]) -> str | None:
        if i is None:
            return None
        return texts[i] if i < len(texts) and texts[i] else f"column {i + 1 + col_offset}"

    if options.no_header:
        phone = index("--phone-column", _position(options.phone_column) or 1)
        days_pos = _position(options.days_column)
        days = None if days_pos is None else index("--days-column", days_pos)
        info = SheetInfo(sheet, None, name(phone, []) or "", name(days, []), [])
        return _Layout(None, phone, days, info)
    header_row, phone, others = _header_and_phone(label, scan, options, index)
    texts = _texts(next(c for r, c in scan if r == header_row))
    days = _days_index(label, texts, header_row, phone, options, index)
    info = SheetInfo(
        sheet,
        header_row,
        name(phone, texts) or "",
        name(days, texts),
        [t for t in texts if t],
        other_phone_columns=[texts[i] for i in others],
    )
    return _Layout(header_row, phone, days, info)


def _header_row(label: str, scan: Scan, options: ReadOptions) -> tuple[int, list[int]] | None:
    """The header row and its phone-like cells (exact names first), if one is found."""
    days = options.days_column
    if days is not None and _position(days) is None:
        found = _find_named(scan, days)
        if found is None:
            raise _NoPhoneColumn(
                f'{label}: --days-column "{days}": no such column in the first '
                f"{options.header_scan_rows} rows; headers seen: {_quoted(_seen_headers(scan))}",
                f'no column "{days}"',
            )
        cells = next(c for r, c in scan if r == found[0])
        return found[0], _match(_texts(cells), PHONE_NAMES, _PHONE_PREFIXES)
    fuzzy = None
    for row, cells in scan:
        texts = _texts(cells)
        hits = _match(texts, PHONE_NAMES, _PHONE_PREFIXES)
        if hits and normalize_header(texts[hits[0]]) in PHONE_NAMES:
            return row, hits
        if hits and fuzzy is None:
            fuzzy = (row, hits)
    return fuzzy


def _header_and_phone(
    label: str, scan: Scan, options: ReadOptions, index: Callable[[str, int], int]
) -> tuple[int, int, list[int]]:
    """(header row, phone index, other phone-like indexes)."""
    spec, pos = options.phone_column, _position(options.phone_column)
    if spec is not None and pos is None:
        named = _find_named(scan, spec)
        if named is None:
            raise _NoPhoneColumn(
                f'{label}: --phone-column "{spec}": no such column in the first '
                f"{options.header_scan_rows} rows; headers seen: {_quoted(_seen_headers(scan))}",
                f'no column "{spec}"',
            )
        return named[0], named[1], []
    found = _header_row(label, scan, options)
    if pos is not None:
        phone = index("--phone-column", pos)
        if found:
            return found[0], phone, []
        for row, cells in scan:
            if phone < len(cells) and _texts(cells)[phone]:
                return row, phone, []
        raise _no_phone(label, scan)
    if not found or not found[1]:
        raise _no_phone(label, scan)
    return found[0], found[1][0], found[1][1:]


def _days_index(
    label: str,
    texts: list[str],
    header_row: int,
    phone: int,
    options: ReadOptions,
    index: Callable[[str, int], int],
) -> int | None:
    spec, pos = options.days_column, _position(options.days_column)
    if pos is not None:
        days: int | None = index("--days-column", pos)
    elif spec is not None:
        found = _find_named([(header_row, texts)], spec)
        if found is None:
            raise InputError(
                f'{label}: --days-column "{spec}": no such column in the header '
                f"(row {header_row}); headers: {_quoted(t for t in texts if t)}"
            )
        days = found[1]
    else:
        hits = _match(texts, DAYS_NAMES, _DAYS_PREFIXES, exclude=phone)
        days = hits[0] if hits else None
    if days == phone:
        raise UsageError(
            f"{label}: the phone and days columns are the same column "
            f"({texts[phone] or phone + 1}): name them apart"
        )
    return days
