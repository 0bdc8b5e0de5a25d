"""The inbox over real folders: what is ready, still written, already imported, ignored."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from importer.errors import InputError
from importer.inbox import InboxScan, archive, fail, scan
from importer.ledger import Ledger

NOW = 1_800_000_000.0
RUN = "20261128T083102Z-a1b2c3"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger.open(tmp_path / "state" / "ledger.sqlite") as opened:
        yield opened


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


def drop(folder: Path, name: str, content: str = "telefono\n3191234567\n", age: float = 60) -> Path:
    """A file last modified ``age`` seconds before NOW."""
    path = folder / name
    path.write_text(content, encoding="utf-8")
    os.utime(path, (NOW - age, NOW - age))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- scan -----------------------------------------------------------------------------------


def test_scan_sorts_every_kind_of_entry(inbox: Path, ledger: Ledger) -> None:
    b = drop(inbox, "b.xlsx", "b")
    a = drop(inbox, "a.csv", "a")
    fresh = drop(inbox, "c.csv", "c", age=2)
    done = drop(inbox, "d.csv", "d")
    ledger.record_imported(sha(done), "inbox/d.csv", "RUN-OLD")
    hidden = drop(inbox, ".DS_Store")
    lock = drop(inbox, "~$clientes.xlsx")
    temps = [drop(inbox, name) for name in ("e.tmp", "f.csv.part", "g.CSV.PART", "h.crdownload")]
    folder = inbox / "subfolder"
    folder.mkdir()
    (inbox / "archive").mkdir()
    drop(inbox / "archive", "old.RUN.csv")
    (inbox / "failed").mkdir()
    link = inbox / "link.csv"
    link.symlink_to(a)

    found = scan(inbox, ledger, settle=5, now=NOW)

    assert found == InboxScan(
        ready=[a, b],
        still_writing=[fresh],
        already_imported=[(done, "RUN-OLD")],
        ignored=sorted([hidden, lock, *temps, folder, link]),
        digests={a: sha(a), b: sha(b), done: sha(done)},
    )


def test_settle_is_measured_from_now(inbox: Path, ledger: Ledger) -> None:
    path = drop(inbox, "a.csv", age=5)
    assert scan(inbox, ledger, settle=5, now=NOW).ready == [path]
    assert scan(inbox, ledger, settle=5.001, now=NOW).still_writing == [path]
    assert scan(inbox, ledger, settle=0, now=NOW - 5).ready == [path]
    # a modification time in the future is treated as still being written
    assert scan(inbox, ledger, settle=0, now=NOW - 6).still_writing == [path]


def test_scan_uses_the_clock_by_default(inbox: Path, ledger: Ledger) -> None:
    path = inbox / "now.csv"
    path.write_text("3191234567\n")
    assert scan(inbox, ledger).still_writing == [path]
    assert scan(inbox, ledger, settle=0).ready == [path]


def test_a_file_that_changes_while_hashed_is_still_writing(
    inbox: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    growing = drop(inbox, "growing.csv", "3191234567\n")
    steady = drop(inbox, "steady.csv", "3001112233\n")
    real_open = Path.open

    def open_and_append(self: Path, *args: object, **kwargs: object) -> object:
        stream = real_open(self, *args, **kwargs)  # type: ignore[call-overload]
        if self == growing:
            with real_open(self, "a") as writer:
                writer.write("3009998877\n")
        return stream

    monkeypatch.setattr(Path, "open", open_and_append)
    found = scan(inbox, ledger, settle=0, now=NOW)
    assert found.still_writing == [growing]
    assert found.ready == [steady]


def test_force_makes_already_imported_files_ready(inbox: Path, ledger: Ledger) -> None:
    path = drop(inbox, "a.csv")
    ledger.record_imported(sha(path), str(path), "RUN-1")
    assert scan(inbox, ledger, settle=0, now=NOW).already_imported == [(path, "RUN-1")]
    forced = scan(inbox, ledger, force=True, settle=0, now=NOW)
    assert forced.ready == [path]
    assert forced.already_imported == []


def test_already_imported_is_by_content_not_by_name(inbox: Path, ledger: Ledger) -> None:
    first = drop(inbox, "export.csv", "3191234567\n")
    ledger.record_imported(sha(first), str(first), "RUN-1")
    same_content = drop(inbox, "export-copy.csv", "3191234567\n")
    first.write_text("3191234567\n3001112233\n")
    os.utime(first, (NOW - 60, NOW - 60))
    found = scan(inbox, ledger, settle=0, now=NOW)
    assert found.ready == [first]
    assert found.already_imported == [(same_content, "RUN-1")]


def test_an_empty_inbox_finds_nothing(inbox: Path, ledger: Ledger) -> None:
    assert scan(inbox, ledger, now=NOW) == InboxScan([], [], [], [], {})


def test_a_missing_inbox_says_how_to_fix_it(tmp_path: Path, ledger: Ledger) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(InputError) as caught:
        scan(missing, ledger)
    assert str(caught.value) == f"--inbox {missing} does not exist: create it, or check the path"


def test_an_inbox_that_is_a_file_is_refused(tmp_path: Path, ledger: Ledger) -> None:
    file = tmp_path / "inbox.csv"
    file.write_text("")
    with pytest.raises(InputError) as caught:
        scan(file, ledger)
    assert str(caught.value) == f"--inbox {file} is not a folder: create it, or check the path"


# -- archive and fail -----------------------------------------------------------------------


def test_archive_names_the_run_and_keeps_the_content(inbox: Path) -> None:
    path = drop(inbox, "clientes.noviembre.xlsx", "contenido")
    moved = archive(inbox, path, RUN)
    assert moved == inbox / "archive" / f"clientes.noviembre.{RUN}.xlsx"
    assert moved.read_text() == "contenido"
    assert not path.exists()
    assert mode(inbox / "archive") == 0o700
    assert moved.stat().st_mtime == NOW - 60


def test_archive_never_overwrites_a_name_already_taken(inbox: Path) -> None:
    (inbox / "archive").mkdir()
    taken = inbox / "archive" / f"a.{RUN}.csv"
    taken.write_text("earlier")
    (inbox / "archive" / f"a.{RUN}.2.csv").write_text("earlier too")
    moved = archive(inbox, drop(inbox, "a.csv", "later"), RUN)
    assert moved == inbox / "archive" / f"a.{RUN}.3.csv"
    assert moved.read_text() == "later"
    assert taken.read_text() == "earlier"


def test_archive_a_file_without_suffix(inbox: Path) -> None:
    moved = archive(inbox, drop(inbox, "LISTA"), RUN)
    assert moved.name == f"LISTA.{RUN}"


def test_fail_moves_and_writes_the_reason_on_one_line(inbox: Path) -> None:
    path = drop(inbox, "roto.xlsx", "not a workbook")
    moved = fail(inbox, path, RUN, "roto.xlsx is not a workbook:\n  re-save it as .xlsx")
    assert moved == inbox / "failed" / f"roto.{RUN}.xlsx"
    assert moved.read_text() == "not a workbook"
    note = inbox / "failed" / f"roto.{RUN}.xlsx.error.txt"
    assert note.read_text(encoding="utf-8") == "roto.xlsx is not a workbook: re-save it as .xlsx\n"
    assert mode(note) == 0o600
    assert mode(inbox / "failed") == 0o700
    assert not path.exists()


def test_fail_twice_keeps_each_file_with_its_own_reason(inbox: Path) -> None:
    first = fail(inbox, drop(inbox, "x.csv", "1"), RUN, "first reason")
    second = fail(inbox, drop(inbox, "x.csv", "2"), RUN, "second reason")
    assert second == inbox / "failed" / f"x.{RUN}.2.csv"
    assert Path(f"{first}.error.txt").read_text() == "first reason\n"
    assert Path(f"{second}.error.txt").read_text() == "second reason\n"
    assert (first.read_text(), second.read_text()) == ("1", "2")


def test_archived_and_failed_files_are_not_scanned_again(inbox: Path, ledger: Ledger) -> None:
    archive(inbox, drop(inbox, "a.csv", "a"), RUN)
    fail(inbox, drop(inbox, "b.csv", "b"), RUN, "bad")
    assert scan(inbox, ledger, settle=0, now=NOW) == InboxScan([], [], [], [], {})


def test_a_run_id_that_is_not_a_file_name_is_refused(inbox: Path) -> None:
    path = drop(inbox, "a.csv")
    with pytest.raises(ValueError, match="cannot be part of a file name"):
        archive(inbox, path, "../escape")
    assert path.exists()


def test_a_move_that_fails_leaves_the_file_and_no_placeholder(
    inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = drop(inbox, "a.csv")

    def refuse(source: object, target: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(InputError) as caught:
        archive(inbox, path, RUN)
    target = inbox / "archive" / f"a.{RUN}.csv"
    assert str(caught.value) == (
        f"cannot move {path} to {target} (Permission denied): check the inbox is writable"
    )
    assert path.exists()
    assert list((inbox / "archive").iterdir()) == []


def test_across_file_systems_the_file_is_copied_then_removed(
    inbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = drop(inbox, "a.csv", "contenido")
    path.chmod(0o640)

    def cross_device(source: object, target: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "replace", cross_device)
    moved = archive(inbox, path, RUN)
    assert moved == inbox / "archive" / f"a.{RUN}.csv"
    assert moved.read_text() == "contenido"
    assert mode(moved) == 0o640
    assert moved.stat().st_mtime == NOW - 60
    assert not path.exists()
