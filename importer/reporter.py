"""The reports of a run: its folder, outcomes.csv, errors.csv, outcomes.xlsx, summary.json.

Everything is written from the journal (``outcomes`` is called once per pass), so reports can
be rebuilt at any time. The counts written are checked against the summary's counts before
summary.json is written: a report that does not reconcile is a bug and is never handed out.

The run folder is created 0700 and every file 0600: they hold personal phone numbers.

Formula safety (every cell of every CSV and XLSX report): a value that starts with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return is prefixed with a single quote ``'``, so Excel
and LibreOffice show it as text and never run it, UNLESS the whole value is a plain number
(optional sign, digits, optional decimal part with ``.`` or ``,``), which no spreadsheet can run
as a formula. So ``=HYPERLINK("http://x")`` is written ``'=HYPERLINK("http://x")`` while a
valid ``+573191234567`` or ``-5`` stays as it is. The XLSX is written by a small streaming
writer (``importer.xlsx_writer``) that has no way to write a formula at all (text is always an
inline string).

Both CSV files are UTF-8 with a BOM (Spanish-locale Excel then shows accents), comma
delimited, CRLF line ends. errors.csv starts with the columns ``phone`` and ``days_block``
(the original cells), so a person can fix it in Excel and import it again as it is.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import Enum
from itertools import compress, islice
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

from importer.errors import ReportError
from importer.model import ATTENTION_STATUSES, OUTCOME_COLUMNS, Outcome
from importer.xlsx_writer import write_xlsx, write_xlsx_xml

if TYPE_CHECKING:
    from importer.columns import SheetLines

OUTCOMES_CSV = "outcomes.csv"
ERRORS_CSV = "errors.csv"
OUTCOMES_XLSX = "outcomes.xlsx"
SUMMARY_JSON = "summary.json"

ERROR_COLUMNS: tuple[str, ...] = (
    "phone",
    "days_block",
    "status",
    "reason",
    "message",
    "source_file",
    "sheet",
    "row",
    "part",
)
"""The columns of errors.csv: the original phone and days cells first, under headers the reader knows."""
_ERROR_SOURCES = ("raw_phone", "raw_days", "status", "reason", "message", "source_file", "sheet",
                  "row", "part")  # fmt: skip
"""The outcome column each column of errors.csv is taken from."""

RISKY_START = "=+-@\t\r"
"""The first characters that make a spreadsheet read a cell as a formula (see safe_cell)."""
_RISKY_START = frozenset(RISKY_START)
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?")
_RUN_ID = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]*")


def new_run_id(now: datetime | None = None) -> str:
    """A run id: the UTC time plus 6 random hex digits (a naive ``now`` is taken as UTC).

    >>> new_run_id(datetime(2026, 11, 28, 8, 31, 2, tzinfo=UTC))[:17]
    '20261128T083102Z-'
    """
    moment = datetime.now(UTC) if now is None else now
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def create_run_dir(reports_dir: Path, run_id: str) -> Path:
    """Create ``reports_dir`` (with parents) and ``reports_dir/run_id`` with mode 0700."""
    if not _RUN_ID.fullmatch(run_id):
        raise ReportError(
            f"run id {run_id!r} is not a run id: give one as printed by `dnc-import run`, "
            f"e.g. 20261128T083102Z-3f9a1c"
        )
    run_dir = reports_dir / run_id
    try:
        reports_dir.mkdir(parents=True, exist_ok=True)
        if run_dir.exists():
            raise ReportError(
                f"run folder {run_dir} already exists: a run id is used once; start a new run"
            )
        run_dir.mkdir(mode=0o700)
        os.chmod(run_dir, 0o700)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise ReportError(
            f"reports folder {reports_dir} cannot be written ({exc.strerror}): "
            f"give --reports-dir a folder you can write"
        ) from exc
    return run_dir


def safe_cell(value: str) -> str:
    """The value as a spreadsheet may show it without running it (see the module docstring).

    >>> safe_cell("=1+1"), safe_cell("+573191234567")
    ("'=1+1", '+573191234567')
    """
    if value[:1] in _RISKY_START and not _PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


class _Tally:
    """What one pass over the outcomes wrote."""

    def __init__(self) -> None:
        self.lines = 0
        self._pairs: Counter[tuple[str, str]] = Counter()

    @classmethod
    def of(cls, lines: int, pairs: Counter[tuple[str, str]]) -> _Tally:
        """A tally of ``lines`` written, by (status, reason) as written."""
        tally = cls()
        tally.lines, tally._pairs = lines, pairs
        return tally

    def count(self, page: list[tuple[object, ...]]) -> None:
        """Count a page of written rows (in OUTCOME_COLUMNS order) by status and reason."""
        self.lines += len(page)
        self._pairs.update(map(_STATUS_REASON, page))

    @property
    def pairs(self) -> Counter[tuple[str, str]]:
        return self._pairs

    @property
    def by_status(self) -> Counter[str]:
        return _sum_by(self._pairs, 0)

    @property
    def by_reason(self) -> Counter[str]:
        return _sum_by(self._pairs, 1)


def _sum_by(pairs: Counter[tuple[str, str]], index: int) -> Counter[str]:
    sums: Counter[str] = Counter()
    for pair, count in pairs.items():
        sums[pair[index]] += count
    return sums


def write_reports(
    run_dir: Path,
    outcomes: Lines,
    summary: dict[str, object],
    *,
    xlsx: bool,
) -> dict[str, str]:
    """Write every report of a run into ``run_dir``; return ``{kind: path}`` of each file.

    ``outcomes`` is read once per pass (CSV files, then the XLSX): a journal (the fast way:
    ``Journal.rows``), or a function giving the Outcomes anew on each call. ``summary["counts"]`` must
    hold ``{"lines": N, "by_status": {...}, "by_reason": {...}}``; what was written is checked
    against it, and a mismatch raises ReportError before summary.json is written. On success
    ``summary["reports"]`` is set to ``{"dir": run_dir, "files": [file names]}``.
    """
    expected = _expected_counts(summary, run_dir)
    written = {"outcomes_csv": run_dir / OUTCOMES_CSV, "errors_csv": run_dir / ERRORS_CSV}
    with _writing(run_dir):
        (run_dir / SUMMARY_JSON).unlink(missing_ok=True)  # back once every report is written
    with _writing(run_dir), _replacing(written["outcomes_csv"], written["errors_csv"]) as temps:
        if isinstance(outcomes, ColumnLines):
            tally = _write_table_csvs(temps[0], temps[1], outcomes)
        else:
            tally = _write_csvs(temps[0], temps[1], _safe_rows(outcomes))
        _reconcile(tally, expected, run_dir, OUTCOMES_CSV)
    if xlsx:
        written["outcomes_xlsx"] = run_dir / OUTCOMES_XLSX
        with _writing(run_dir), _replacing(written["outcomes_xlsx"]) as (temp,):
            if isinstance(outcomes, ColumnLines):
                xlsx_tally = _write_table_xlsx(temp, outcomes, summary)
            else:
                xlsx_tally = _write_xlsx(temp, _safe_rows(outcomes), summary)
            _reconcile(xlsx_tally, expected, run_dir, OUTCOMES_XLSX)
    written["summary_json"] = run_dir / SUMMARY_JSON
    summary["reports"] = {
        "dir": str(run_dir),
        "files": [path.name for path in written.values()],
    }
    text = _summary_json(summary)
    with (
        _writing(run_dir),
        _replacing(written["summary_json"]) as (temp,),
        _open_private(temp, newline="\n") as out,
    ):
        out.write(text)
    return {kind: str(path) for kind, path in written.items()}


def human_summary(summary: Mapping[str, object]) -> str:
    """A few lines for stderr: the run, lines by status, top reasons, sending, the files.

    Reads ``run_id``, ``counts``, and if present ``sending`` (``calls``, ``retries``, ``added``)
    and ``reports`` (as set by ``write_reports``).
    """
    counts = _mapping(summary.get("counts"))
    by_status = {k: _int(v) for k, v in _mapping(counts.get("by_status")).items() if _int(v)}
    by_reason = {k: _int(v) for k, v in _mapping(counts.get("by_reason")).items() if _int(v)}
    lines = [f"Run {summary.get('run_id', '?')}: {_int(counts.get('lines'))} lines"]
    width = max((len(name) for name in by_status), default=0)
    lines += [f"  {name:<{width}}  {count:>8}" for name, count in by_status.items()]
    top = sorted(by_reason.items(), key=lambda item: (-item[1], item[0]))[:5]
    if top:
        width = max(len(name) for name, _ in top)
        lines.append("Top reasons:")
        lines += [f"  {name:<{width}}  {count:>8}" for name, count in top]
    sending = _mapping(summary.get("sending"))
    if sending:
        calls, retries = _int(sending.get("calls")), _int(sending.get("retries"))
        lines.append(
            f"Sent: {calls} call{'s' if calls != 1 else ''} ({retries} "
            f"retr{'ies' if retries != 1 else 'y'}), server added {_int(sending.get('added'))}"
        )
    stopped = _mapping(summary.get("stopped"))
    if stopped:
        lines.append(f"Stopped ({stopped.get('reason')}): {stopped.get('message')}")
    reports = _mapping(summary.get("reports"))
    if reports:
        files = reports.get("files")
        names = ", ".join(str(name) for name in files) if isinstance(files, list) else ""
        lines.append(f"Reports in {reports.get('dir')}: {names}")
    return "\n".join(lines)


# -- writing ----------------------------------------------------------------------------


class RowSource(Protocol):
    """What ``write_reports`` reads lines from fastest: the run journal (``Journal.rows``)."""

    def rows(
        self,
        columns: Sequence[str] = ...,
        *,
        escape: Callable[[str], str] | None = ...,
        escape_first: str = ...,
    ) -> Iterator[tuple[object, ...]]: ...


@runtime_checkable
class ColumnLines(Protocol):
    """A run's lines held as columns: the bulk path's ``importer.columns.RunLines``."""

    def pages(self, size: int) -> Iterator[tuple[SheetLines, Any]]: ...


Lines = RowSource | Callable[[], Iterable[Outcome]] | ColumnLines
"""A run's lines: a journal, a function that gives its Outcomes anew on each call, or the
lines as the bulk path holds them (written by ``importer.columnar_reports``, the same bytes)."""

_PAGE = 5000
"""Lines handed to the csv module (and counted) at a time."""
_OUTCOME_ROW = attrgetter(
    *("status._value_" if name == "status" else name for name in OUTCOME_COLUMNS)
)
_STATUS_AT = OUTCOME_COLUMNS.index("status")
_STATUS_REASON = itemgetter(_STATUS_AT, OUTCOME_COLUMNS.index("reason"))
_ERROR_CELLS = itemgetter(*(OUTCOME_COLUMNS.index(name) for name in _ERROR_SOURCES))
_ATTENTION = frozenset(status.value for status in ATTENTION_STATUSES)


def _safe_rows(
    lines: RowSource | Callable[[], Iterable[Outcome]],
) -> Iterator[tuple[object, ...]]:
    """One pass over the lines as tuples in OUTCOME_COLUMNS order, every text cell safe_cell'd.

    From a journal SQLite hands safe_cell only the cells that start with a risky character.
    """
    if callable(lines):
        for row in map(_OUTCOME_ROW, lines()):
            yield tuple(safe_cell(value) if isinstance(value, str) else value for value in row)
    else:
        yield from lines.rows(OUTCOME_COLUMNS, escape=safe_cell, escape_first=RISKY_START)


@contextmanager
def _writing(run_dir: Path) -> Iterator[None]:
    """Translate OS errors while writing reports into ReportError (the one place).

    The advice fits every command: the run folder is fixed once made (``resume`` writes there
    too); what to run next (resume, or run again) the CLI adds.
    """
    try:
        yield
    except OSError as exc:
        raise ReportError(
            f"reports cannot be written in {run_dir} ({exc.strerror or exc}): free disk space "
            f"there or fix that folder's permissions"
        ) from exc


@contextmanager
def _replacing(*paths: Path) -> Iterator[tuple[Path, ...]]:
    """Temporary names beside ``paths`` (``.NAME.partial``) to write instead, each put in
    place by ``os.replace`` once all of them are written: a report is whole or absent (or the
    previous one), never cut short by a full disk or a kill. Removed if the writing fails."""
    temps = tuple(path.with_name(f".{path.name}.partial") for path in paths)
    try:
        yield temps
        for temp, path in zip(temps, paths, strict=True):
            os.replace(temp, path)
    except BaseException:
        for temp in temps:
            with suppress(OSError):
                temp.unlink()
        raise


def _open_private(path: Path, *, newline: str = "", bom: bool = False) -> IO[str]:
    """Open ``path`` for writing text, created (or truncated) with mode 0600."""
    text = open(_private_fd(path), "w", encoding="utf-8", newline=newline)  # noqa: SIM115
    if bom:  # by hand: the utf-8-sig codec encodes in Python, a call per row written
        text.write("\ufeff")
    return text


def _private_fd(path: Path) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode otherwise
    return fd


def _write_csvs(
    outcomes_path: Path, errors_path: Path, rows: Iterator[tuple[object, ...]]
) -> _Tally:
    # Whole pages go through C: csv.writerows, itemgetter, compress, Counter.update. None is
    # written as an empty cell by the csv module, and whole numbers need no neutralizing.
    tally = _Tally()
    with (
        _open_private(outcomes_path, bom=True) as all_file,
        _open_private(errors_path, bom=True) as err_file,
    ):
        all_rows, err_rows = csv.writer(all_file), csv.writer(err_file)
        all_rows.writerow(OUTCOME_COLUMNS)
        err_rows.writerow(ERROR_COLUMNS)
        while page := list(islice(rows, _PAGE)):
            all_rows.writerows(page)
            attention = map(_ATTENTION.__contains__, map(itemgetter(_STATUS_AT), page))
            err_rows.writerows(map(_ERROR_CELLS, compress(page, attention)))
            tally.count(page)
    return tally


def _write_table_csvs(outcomes_path: Path, errors_path: Path, lines: ColumnLines) -> _Tally:
    from importer.columnar_reports import write_csvs  # pyarrow, only where it is used

    header = io.StringIO()
    csv.writer(header).writerow(OUTCOME_COLUMNS)
    errors_header = io.StringIO()
    csv.writer(errors_header).writerow(ERROR_COLUMNS)
    with (
        open(_private_fd(outcomes_path), "wb") as all_file,
        open(_private_fd(errors_path), "wb") as err_file,
    ):
        all_file.write(("\ufeff" + header.getvalue()).encode())
        err_file.write(("\ufeff" + errors_header.getvalue()).encode())
        written = write_csvs(lines, all_file, err_file)  # type: ignore[arg-type]
    return _Tally.of(written.lines, written.pairs)


def _write_table_xlsx(path: Path, lines: ColumnLines, summary: Mapping[str, object]) -> _Tally:
    from importer.columnar_reports import Written, xlsx_rows

    written = Written()
    count = _int(_mapping(summary.get("counts")).get("lines"))
    with open(_private_fd(path), "wb") as raw:
        rows = xlsx_rows(lines, written)  # type: ignore[arg-type]
        write_xlsx_xml(raw, rows, _safe_summary(summary), lines=count)
    return _Tally.of(written.lines, written.pairs)


def _safe_summary(summary: Mapping[str, object]) -> Iterator[tuple[object, ...]]:
    return (
        tuple(safe_cell(value) if isinstance(value, str) else value for value in row)
        for row in _summary_rows(summary)
    )


def _write_xlsx(
    path: Path, rows: Iterator[tuple[object, ...]], summary: Mapping[str, object]
) -> _Tally:
    tally = _Tally()
    # The writer takes every text cell already safe_cell'd, as the outcome rows come.
    summary_rows = (
        tuple(safe_cell(value) if isinstance(value, str) else value for value in row)
        for row in _summary_rows(summary)
    )
    lines = _int(_mapping(summary.get("counts")).get("lines"))
    with open(_private_fd(path), "wb") as raw:
        write_xlsx(raw, _counted_pages(rows, tally), summary_rows, lines=lines)
    return tally


def _counted_pages(
    rows: Iterator[tuple[object, ...]], tally: _Tally
) -> Iterator[list[tuple[object, ...]]]:
    """The rows in pages of _PAGE, each counted into ``tally`` as it is handed out."""
    while page := list(islice(rows, _PAGE)):
        tally.count(page)
        yield page


def _summary_rows(summary: Mapping[str, object]) -> Iterator[tuple[object, ...]]:
    """The rows of the XLSX's Summary sheet: run, counts by status and reason, inputs."""
    counts = _mapping(summary.get("counts"))
    yield ("run_id", _text(summary.get("run_id")))
    yield ("lines", _int(counts.get("lines")))
    yield ()
    yield ("status", "lines")
    yield from ((key, _int(value)) for key, value in _mapping(counts.get("by_status")).items())
    yield ()
    yield ("reason", "lines")
    yield from ((key, _int(value)) for key, value in _mapping(counts.get("by_reason")).items())
    yield ()
    yield ("input", "sha256")
    inputs = summary.get("inputs")
    for entry in inputs if isinstance(inputs, list) else []:
        item = _mapping(entry)
        yield (_text(item.get("path")), _text(item.get("sha256")))


# -- checking -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Expected:
    lines: int
    by_status: dict[str, int]
    by_reason: dict[str, int]


def _expected_counts(summary: Mapping[str, object], run_dir: Path) -> _Expected:
    counts = summary.get("counts")
    by_status = counts.get("by_status") if isinstance(counts, Mapping) else None
    by_reason = counts.get("by_reason") if isinstance(counts, Mapping) else None
    lines = counts.get("lines") if isinstance(counts, Mapping) else None
    try:
        if not (isinstance(by_status, Mapping) and isinstance(by_reason, Mapping)):
            raise TypeError("no by_status or by_reason mapping")
        if not isinstance(lines, int):
            raise TypeError(f"lines is {lines!r}")
        return _Expected(
            lines,
            {str(k): int(v) for k, v in by_status.items()},
            {str(k): int(v) for k, v in by_reason.items()},
        )
    except (TypeError, ValueError) as exc:
        raise ReportError(
            f"the summary has no usable counts ({exc}) (this is a bug: please report it with "
            f"the run folder {run_dir})"
        ) from exc


def _as_written(counts: Mapping[str, int]) -> Counter[str]:
    """Counts by the key as the reports write it (``=x`` as ``'=x``): the tally counts cells."""
    written: Counter[str] = Counter()
    for key, count in counts.items():
        written[safe_cell(key)] += count
    return written


def _reconcile(tally: _Tally, expected: _Expected, run_dir: Path, name: str) -> None:
    problems: list[str] = []
    if tally.lines != expected.lines:
        problems.append(f"{name} has {tally.lines} lines, the summary {expected.lines}")
    if sum(expected.by_status.values()) != expected.lines:
        problems.append(
            f"the summary's statuses add up to {sum(expected.by_status.values())}, "
            f"its lines to {expected.lines}"
        )
    for kind, got, want in (
        ("status", tally.by_status, _as_written(expected.by_status)),
        ("reason", tally.by_reason, _as_written(expected.by_reason)),
    ):
        for key in sorted(set(got) | set(want)):
            if got.get(key, 0) != want.get(key, 0):
                problems.append(
                    f"{kind} {key!r}: {got.get(key, 0)} in {name}, {want.get(key, 0)} in the summary"
                )
    if problems:
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        raise ReportError(
            f"counts do not reconcile: {shown} (this is a bug: please report it with the run "
            f"folder {run_dir})"
        )


# -- small helpers ------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _summary_json(summary: Mapping[str, object]) -> str:
    try:
        return json.dumps(summary, indent=2, ensure_ascii=False, default=_json_default) + "\n"
    except (TypeError, ValueError) as exc:
        raise ReportError(
            f"summary.json cannot be written ({exc}) (this is a bug; the other reports are written)"
        ) from exc


def _mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _int(value: object) -> int:
    """A count from a summary that may have been read back from JSON; 0 when there is none."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        return int(value)
    except ValueError:
        return 0
