"""The bulk path's lines reach the journal as ``Journal.add_outcomes`` would put them.

Through the second process (``python -m importer.line_loader``, the ADBC driver) for many lines,
through ``add_outcomes`` for a few, and through ``add_outcomes`` again when the second process
fails; a failure in the run kills the second process and keeps none of its lines.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow as pa
import pytest

from importer import line_loader
from importer.columns import Duplicates, SheetLines
from importer.journal import Journal
from importer.line_loader import LineWriter
from importer.model import OUTCOME_COLUMNS, Reason, Status


def _sheet(source: str, sheet: str, first_row: int, phones: list[str]) -> SheetLines:
    size = len(phones)
    table = pa.table(
        {
            "row": pa.array(range(first_row, first_row + size), pa.int64()),
            "part": pa.array([1] * size, pa.int64()),
            "raw_phone": pa.array(phones),
            "raw_days": pa.array(["30"] * size),
            "telephone": pa.array(phones),
            "days_block": pa.array([30] * size, pa.int64()),
            "status": pa.array([Status.READY.value] * size),
            "reason": pa.array([Reason.VALID] * size),
            "message": pa.array([f"valid; sent as {p}, \u00e9" for p in phones]),
        }
    )
    return SheetLines(source, sheet, table)


_BATCHES = [
    _sheet("a.csv", "", 2, ["3191234567", "3001234567", "3191234567"]),
    _sheet("b.xlsx", "Hoja 1", 5, ["6012345678", "3001234567"]),
]
_DUPLICATES = Duplicates(pa.array([2, 4], pa.int64()), pa.array(["dup of a.csv row 2", "dup"]))


def _stored(
    path: Path, second_process: bool, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[object, ...]]:
    monkeypatch.setattr(line_loader, "SECOND_PROCESS_LINES", 1 if second_process else 10**9)
    with Journal.create(path, run_id="t", meta={}) as journal:
        with LineWriter(journal) as writer:
            for batch in _BATCHES:
                writer.add(batch)
            assert (writer._child is not None) == second_process
            assert writer.close(_DUPLICATES) == 5
        return list(journal.rows(OUTCOME_COLUMNS))


def test_the_second_process_stores_what_add_outcomes_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    by_child = _stored(tmp_path / "child.sqlite", True, monkeypatch)
    here = _stored(tmp_path / "here.sqlite", False, monkeypatch)
    assert by_child == here
    assert [line[8] for line in here] == ["ready", "ready", "duplicate", "ready", "duplicate"]
    assert here[2][10] == "dup of a.csv row 2" and here[3][:3] == ("b.xlsx", "Hoja 1", 5)


def test_a_failed_second_process_leaves_the_lines_to_this_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = _stored(tmp_path / "here.sqlite", False, monkeypatch)
    monkeypatch.setattr(
        line_loader, "_command", lambda journal: [sys.executable, "-c", "import sys; sys.exit(3)"]
    )
    assert _stored(tmp_path / "child.sqlite", True, monkeypatch) == expected


def test_a_failure_in_the_run_kills_the_second_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(line_loader, "SECOND_PROCESS_LINES", 1)
    with Journal.create(tmp_path / "j.sqlite", run_id="t", meta={}) as journal:
        with pytest.raises(KeyboardInterrupt), LineWriter(journal) as writer:
            writer.add(_BATCHES[0])
            child = writer._child
            assert child is not None
            raise KeyboardInterrupt
        assert child is not None and child._process.returncode is not None
        assert journal.line_count() == 0
