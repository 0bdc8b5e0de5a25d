"""The ledger over real SQLite files: confirmed blocks per server, the skip verdict, imports."""

from __future__ import annotations

import multiprocessing
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from importer.client import encode_body
from importer.errors import ImporterError, JournalError, LedgerError, UsageError
from importer.journal import Journal
from importer.ledger import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    Block,
    Ledger,
    default_ledger_path,
    default_state_dir,
    skip_verdict,
)
from importer.lock import default_lock_dir
from importer.model import BatchResult, Outcome, Status
from importer.pipeline import _push_confirmed

DAY = date(2026, 11, 28)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


@pytest.fixture
def ledger(path: Path) -> Iterator[Ledger]:
    with Ledger.open(path) as opened:
        yield opened


# -- where it lives -------------------------------------------------------------------------


def test_state_dir_from_env_is_created_private_and_beside_the_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state" / "dnc"
    monkeypatch.setenv("DNC_IMPORT_STATE_DIR", str(state))
    assert default_state_dir() == state
    assert mode(state) == 0o700
    assert default_ledger_path() == state / "ledger.sqlite"
    assert default_lock_dir() == default_state_dir() / "locks"


def test_state_dir_from_xdg_then_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DNC_IMPORT_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "dnc-import"
    assert default_lock_dir() == default_state_dir() / "locks"
    # a relative XDG_STATE_HOME is invalid by the XDG spec and ignored
    monkeypatch.setenv("XDG_STATE_HOME", "relative/xdg")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_state_dir() == tmp_path / "home" / ".local" / "state" / "dnc-import"
    assert mode(default_state_dir()) == 0o700


def test_state_dir_that_cannot_be_made_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DNC_IMPORT_STATE_DIR", str(blocker / "state"))
    with pytest.raises(UsageError) as caught:
        default_state_dir()
    assert str(caught.value) == (
        f"the state folder {str(blocker / 'state')!r} cannot be created or made private "
        "(NotADirectoryError: Not a directory): set DNC_IMPORT_STATE_DIR to a folder of yours"
    )


# -- the file -------------------------------------------------------------------------------


def test_created_with_private_modes_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "ledger.sqlite"
    with Ledger.open(path) as ledger:
        ledger.record_added("wv0002", [("3191234567", 30)], on=DAY)
        assert mode(path) == 0o600
        assert mode(Path(f"{path}-wal")) == 0o600
    assert mode(tmp_path / "new") == 0o700
    assert mode(tmp_path / "new" / "deeper") == 0o700
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


def test_an_existing_parent_folder_is_left_as_it_is(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    Ledger.open(tmp_path / "ledger.sqlite").close()
    assert mode(tmp_path) == 0o755


def test_reopen_after_close_keeps_everything(path: Path) -> None:
    with Ledger.open(path) as ledger:
        assert ledger.record_added("wv0002", [("3191234567", 90)], on=DAY) == 1
        ledger.record_imported("ab" * 32, "inbox/a.csv", "RUN-1")
    ledger.close()  # idempotent
    with Ledger.open(path) as again:
        assert again.blocks("wv0002", ["3191234567"]) == {
            "3191234567": Block("3191234567", 90, DAY)
        }
        imported = again.was_imported("ab" * 32)
    assert imported is not None
    assert (imported["path"], imported["run_id"]) == ("inbox/a.csv", "RUN-1")
    assert datetime.fromisoformat(str(imported["imported_at"])).tzinfo is not None


def test_a_corrupt_file_is_a_clear_error_and_is_left_alone(path: Path) -> None:
    garbage = b"this is not a database at all\n" * 200
    path.write_bytes(garbage)
    with pytest.raises(LedgerError) as caught:
        Ledger.open(path)
    assert str(caught.value) == (
        f"ledger {path} is corrupt or not a dnc-import ledger (file is not a database): move "
        "the file aside and run again (a new, empty ledger is made; numbers it knew are then "
        "sent once more)"
    )
    assert path.read_bytes() == garbage
    assert isinstance(caught.value, ImporterError)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_another_sqlite_file_is_refused_and_not_switched_to_wal(path: Path) -> None:
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE people (name TEXT)")
    other.commit()
    other.close()
    with pytest.raises(LedgerError) as caught:
        Ledger.open(path)
    assert str(caught.value) == (
        f"{path} is not a dnc-import ledger (another SQLite file): give the path of a ledger, "
        "or of a file that does not exist yet"
    )
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    finally:
        other.close()


def test_a_run_journal_is_not_a_ledger(tmp_path: Path) -> None:
    journal_path = tmp_path / "journal.sqlite"
    Journal.create(journal_path, run_id="RUN", meta={}).close()
    with pytest.raises(LedgerError, match="is not a dnc-import ledger"):
        Ledger.open(journal_path)
    Ledger.open(tmp_path / "ledger.sqlite").close()
    with pytest.raises(JournalError, match="is not a dnc-import run journal"):
        Journal.open(tmp_path / "ledger.sqlite")


def test_another_schema_version_is_refused(path: Path) -> None:
    Ledger.open(path).close()
    raw = sqlite3.connect(path)
    raw.execute("PRAGMA user_version = 7")
    raw.close()
    with pytest.raises(LedgerError) as caught:
        Ledger.open(path)
    assert str(caught.value) == (
        f"ledger {path} has schema version 7, this dnc-import reads version 2: use a newer "
        "dnc-import, or move the file aside and run again (a new, empty ledger is made; "
        "numbers it knew are then sent once more)"
    )


def test_a_folder_in_the_way_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ledger.sqlite").mkdir()
    with pytest.raises(LedgerError) as caught:
        Ledger.open(tmp_path / "ledger.sqlite")
    assert str(caught.value) == (
        f"ledger {tmp_path / 'ledger.sqlite'} is not a file: give the path of a ledger file"
    )


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(LedgerError) as caught:
        Ledger.open(tmp_path / "state" / "ledger.sqlite")
    assert str(caught.value) == (
        f"ledger {tmp_path / 'state' / 'ledger.sqlite'} cannot be created (NotADirectoryError: "
        "Not a directory): set DNC_IMPORT_STATE_DIR to a folder of yours"
    )


def test_sqlite_errors_while_writing_become_ledger_errors(ledger: Ledger) -> None:
    ledger._db.execute("PRAGMA query_only = ON")
    with pytest.raises(LedgerError) as caught:
        ledger.record_added("wv0002", [("3191234567", 30)], on=DAY)
    assert str(caught.value) == (
        f"ledger {ledger.path}: cannot record confirmed numbers (attempt to write a readonly "
        "database): check the disk has space and the state folder is writable; everything "
        "recorded before is kept"
    )
    assert isinstance(caught.value.__cause__, sqlite3.Error)


# -- blocks ---------------------------------------------------------------------------------


def test_blocks_returns_only_numbers_confirmed_on_that_server(ledger: Ledger) -> None:
    assert ledger.record_added("wv0002", [("3191234567", 90), ("3001112233", 1)], on=DAY) == 2
    assert ledger.blocks("wv0002", ["3191234567", "3001112233", "3100000000"]) == {
        "3191234567": Block("3191234567", 90, DAY),
        "3001112233": Block("3001112233", 1, DAY),
    }
    assert ledger.blocks("wv0042", ["3191234567"]) == {}
    assert ledger.blocks("wv0002", []) == {}


def test_per_server_records_are_independent(ledger: Ledger) -> None:
    ledger.record_added("wv0002", [("3191234567", 90)], on=DAY)
    ledger.record_added("wv0042", [("3191234567", 5)], on=date(2026, 12, 1))
    assert ledger.blocks("wv0002", ["3191234567"])["3191234567"] == Block("3191234567", 90, DAY)
    assert ledger.blocks("wv0042", ["3191234567"])["3191234567"] == Block(
        "3191234567", 5, date(2026, 12, 1)
    )


def test_a_later_confirmation_replaces_an_earlier_one_even_shorter(ledger: Ledger) -> None:
    ledger.record_added("wv0002", [("3191234567", 90)], on=DAY)
    ledger.record_added("wv0002", [("3191234567", 10)], on=date(2026, 12, 5))
    assert ledger.blocks("wv0002", ["3191234567"])["3191234567"] == Block(
        "3191234567", 10, date(2026, 12, 5)
    )
    # same day: the last call is what the server holds
    ledger.record_added("wv0002", [("3191234567", 30)], on=date(2026, 12, 5))
    assert ledger.blocks("wv0002", ["3191234567"])["3191234567"].days == 30
    # within one call, the last item wins too
    ledger.record_added("wv0002", [("3001112233", 7), ("3001112233", 3)], on=DAY)
    assert ledger.blocks("wv0002", ["3001112233"])["3001112233"].days == 3


def test_a_confirmation_dated_before_the_stored_one_does_not_replace_it(ledger: Ledger) -> None:
    ledger.record_added("wv0002", [("3191234567", 10)], on=date(2026, 12, 5))
    ledger.record_added("wv0002", [("3191234567", 90)], on=DAY)
    assert ledger.blocks("wv0002", ["3191234567"])["3191234567"] == Block(
        "3191234567", 10, date(2026, 12, 5)
    )


def test_blocks_streams_a_generator_over_several_chunks(ledger: Ledger) -> None:
    numbers = [f"300{n:07d}" for n in range(12_001)]
    assert ledger.record_added("wv0002", ((n, 30) for n in numbers[::2]), on=DAY) == 6001
    found = ledger.blocks("wv0002", (n for n in numbers))
    assert sorted(found) == numbers[::2]
    assert found["3000012000"] == Block("3000012000", 30, DAY)


def test_a_failing_iterable_keeps_nothing_of_the_call(ledger: Ledger) -> None:
    def items() -> Iterator[tuple[str, int]]:
        for n in range(7000):
            yield f"300{n:07d}", 30
        raise RuntimeError("reader broke")

    with pytest.raises(RuntimeError, match="reader broke"):
        ledger.record_added("wv0002", items(), on=DAY)
    assert ledger.blocks("wv0002", ["3000000000", "3000006999"]) == {}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (("3191234567", 0), "cannot record 3191234567 with days 0: days are a whole number >= 1"),
        (("3191234567", True), "cannot record 3191234567 with days True: days are a whole"),
        (("", 30), "cannot record telephone '': give the exact string the server confirmed"),
    ],
)
def test_bad_items_are_refused_whole(ledger: Ledger, item: tuple[str, int], message: str) -> None:
    with pytest.raises(LedgerError) as caught:
        ledger.record_added("wv0002", [("3001112233", 30), item], on=DAY)
    assert message in str(caught.value)
    assert str(caught.value).endswith("(this is a bug)")
    assert ledger.blocks("wv0002", ["3001112233"]) == {}


def test_a_datetime_is_refused_as_the_confirmation_date(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="takes the UTC date of the confirmation"):
        ledger.record_added("wv0002", [("3191234567", 30)], on=datetime(2026, 11, 28, 23, 0))


def test_the_ledger_never_holds_the_token(ledger: Ledger, sim_token: str) -> None:
    ledger.record_added("wv0002", [("3191234567", 30)], on=DAY)
    ledger.record_imported("cd" * 32, "inbox/b.csv", "RUN-2")
    ledger.close()
    for suffix in ("", "-wal", "-shm"):
        file = Path(f"{ledger.path}{suffix}")
        if file.exists():
            assert sim_token.encode() not in file.read_bytes()


# -- the skip verdict -----------------------------------------------------------------------


def test_block_until_is_added_on_plus_days() -> None:
    assert Block("3191234567", 90, DAY).until == date(2027, 2, 26)
    assert Block("3191234567", 1, DAY).until == date(2026, 11, 29)
    assert Block("3191234567", 3650, DAY).until == date(2036, 11, 25)


def test_skip_when_until_equals_today_plus_days() -> None:
    block = Block("3191234567", 90, DAY)
    today = date(2026, 12, 1)
    days = (block.until - today).days  # 87
    assert skip_verdict(block, days, today, server="wv0002") == (
        "already blocked on wv0002 until 2027-02-26 (confirmed 2026-11-28 for 90 days); "
        "--no-skip sends it again"
    )
    assert skip_verdict(block, days + 1, today, server="wv0002") is None
    assert skip_verdict(block, 1, date(2027, 2, 26), server="wv0002") is None
    assert skip_verdict(block, 1, date(2027, 2, 25), server="wv0002") is not None


def test_skip_the_same_request_again_on_the_same_day() -> None:
    block = Block("3191234567", 90, DAY)
    assert skip_verdict(block, 90, DAY, server="wv0042") is not None
    assert skip_verdict(block, 91, DAY, server="wv0042") is None


def test_one_day_block_is_singular_and_expires_the_next_day() -> None:
    block = Block("3191234567", 1, DAY)
    assert skip_verdict(block, 1, DAY, server="wv0002") == (
        "already blocked on wv0002 until 2026-11-29 (confirmed 2026-11-28 for 1 day); "
        "--no-skip sends it again"
    )
    assert skip_verdict(block, 1, date(2026, 11, 29), server="wv0002") is None


def test_ten_year_block_skips_shorter_requests_for_years() -> None:
    block = Block("3191234567", 3650, DAY)
    assert skip_verdict(block, 3650, DAY, server="wv0002") is not None
    assert skip_verdict(block, 30, date(2036, 10, 26), server="wv0002") is not None
    assert skip_verdict(block, 30, date(2036, 10, 27), server="wv0002") is None


def test_never_confirmed_is_always_sent() -> None:
    assert skip_verdict(None, 1, DAY, server="wv0002") is None


def test_uncertain_numbers_are_the_callers_to_leave_out(ledger: Ledger) -> None:
    """The ledger records what it is given: only the items of ``added`` batches go in."""
    ledger.record_added("wv0002", [("3191234567", 30)], on=DAY)  # an added batch
    found = ledger.blocks("wv0002", ["3191234567", "3001112233"])  # the other was uncertain
    assert skip_verdict(found.get("3001112233"), 30, DAY, server="wv0002") is None
    assert skip_verdict(found.get("3191234567"), 30, DAY, server="wv0002") is not None


# -- imported files -------------------------------------------------------------------------


def test_was_imported_and_the_newest_run_wins(ledger: Ledger) -> None:
    sha = "0f" * 32
    assert ledger.was_imported(sha) is None
    ledger.record_imported(sha, "inbox/clientes.xlsx", "RUN-1")
    first = ledger.was_imported(sha)
    assert first is not None
    assert first["run_id"] == "RUN-1"
    assert first["path"] == "inbox/clientes.xlsx"
    ledger.record_imported(sha, "inbox/copia.xlsx", "RUN-2")
    second = ledger.was_imported(sha)
    assert second is not None
    assert (second["path"], second["run_id"]) == ("inbox/copia.xlsx", "RUN-2")
    assert ledger.was_imported("1f" * 32) is None


def test_two_connections_see_each_others_commits(path: Path) -> None:
    with Ledger.open(path) as first, Ledger.open(path) as second:
        first.record_added("wv0002", [("3191234567", 30)], on=DAY)
        assert second.blocks("wv0002", ["3191234567"]) == {
            "3191234567": Block("3191234567", 30, DAY)
        }


# -- crashes and concurrent runs ------------------------------------------------------------


def test_a_recorded_confirmation_survives_kill_9(path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from datetime import date
        from pathlib import Path
        from importer.ledger import Ledger
        ledger = Ledger.open(Path({str(path)!r}))
        ledger.record_added("wv0002", [("3191234567", 90), ("3001112233", 30)], date(2026, 11, 28))
        ledger.record_imported("ab" * 32, "inbox/a.csv", "RUN-1")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, timeout=30
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    assert Path(f"{path}-wal").exists()  # never checkpointed: the commits live in the WAL
    with Ledger.open(path) as ledger:
        assert ledger.blocks("wv0002", ["3191234567", "3001112233"]) == {
            "3191234567": Block("3191234567", 90, DAY),
            "3001112233": Block("3001112233", 30, DAY),
        }
        assert ledger.was_imported("ab" * 32) is not None


def _open_and_record(args: tuple[str, int]) -> int:
    path, n = args
    with Ledger.open(Path(path)) as ledger:
        return ledger.record_added("wv0002", [(f"300{n:07d}", 30)], on=DAY)


@pytest.mark.parametrize("trial", range(3))
def test_runs_creating_the_same_new_ledger_at_once_all_succeed(tmp_path: Path, trial: int) -> None:
    path = tmp_path / "state" / "ledger.sqlite"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        assert pool.map(_open_and_record, [(str(path), n) for n in range(8)]) == [1] * 8
    with Ledger.open(path) as ledger:
        assert len(ledger.blocks("wv0002", [f"300{n:07d}" for n in range(8)])) == 8


# -- queued confirmations (issue 5) -----------------------------------------------------------

AT = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def body_of(*numbers: tuple[str, int]) -> bytes:
    return encode_body(list(numbers))


def test_queued_confirmations_reach_blocks_when_folded_at_close(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.queue_added("wv0002", body_of(("3191234567", 90), ("3001112233", 30)), AT)
        ledger.queue_added("wv0042", body_of(("3191234567", 5)), AT)
        raw = sqlite3.connect(path)
        assert raw.execute("SELECT COUNT(*) FROM blocks").fetchone() == (0,)  # queued only
        assert raw.execute("SELECT COUNT(*) FROM pending").fetchone() == (2,)
        raw.close()
    with Ledger.open(path) as again:
        assert again.blocks("wv0002", ["3191234567", "3001112233"]) == {
            "3191234567": Block("3191234567", 90, DAY),
            "3001112233": Block("3001112233", 30, DAY),
        }
        assert again.blocks("wv0042", ["3191234567"]) == {"3191234567": Block("3191234567", 5, DAY)}
        assert again.fold() == 0  # nothing left


def test_a_queued_confirmation_survives_kill_9_and_the_next_open_folds_it(path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from datetime import datetime, UTC
        from pathlib import Path
        from importer.client import encode_body
        from importer.ledger import Ledger
        ledger = Ledger.open(Path({str(path)!r}))
        ledger.queue_added("wv0002", encode_body([("3191234567", 90)]), datetime(2026, 11, 28, tzinfo=UTC))
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, timeout=30
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()
    with Ledger.open(path) as ledger:
        assert ledger.blocks("wv0002", ["3191234567"]) == {
            "3191234567": Block("3191234567", 90, DAY)
        }


def test_leaving_on_an_error_does_not_fold_but_keeps_the_queue(path: Path) -> None:
    with pytest.raises(RuntimeError), Ledger.open(path) as ledger:
        ledger.queue_added("wv0002", body_of(("3191234567", 90)), AT)
        raise RuntimeError("the run failed")
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT COUNT(*) FROM pending").fetchone() == (1,)
    raw.close()
    with Ledger.open(path) as again:
        assert again.blocks("wv0002", ["3191234567"])["3191234567"].days == 90


def test_close_without_folding_leaves_the_queue_to_the_next_open(path: Path) -> None:
    """A bulk run closes its ledger so and has a second process open it (the fold)."""
    ledger = Ledger.open(path)
    ledger.queue_added("wv0002", body_of(("3191234567", 90)), AT)
    ledger.close(fold=False)
    ledger.close()  # idempotent: no fold once closed
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT COUNT(*) FROM pending").fetchone() == (1,)
    assert raw.execute("SELECT COUNT(*) FROM blocks").fetchone() == (0,)
    raw.close()
    with Ledger.open(path) as again:
        assert again.blocks("wv0002", ["3191234567"])["3191234567"].days == 90
        assert again.fold() == 0


def test_the_same_confirmation_queued_again_never_replaces_a_newer_one(path: Path) -> None:
    """A run killed between its verdict and marking it queued queues that batch again on
    resume, maybe after another run confirmed the same number anew, the same day: the older
    confirmation (its own time) must not win, or the ledger would claim the longer block."""
    old, new = AT, AT.replace(hour=15)
    with Ledger.open(path) as ledger:
        ledger.queue_added("wv0002", body_of(("3191234567", 90)), old)
    with Ledger.open(path) as ledger:
        ledger.queue_added("wv0002", body_of(("3191234567", 10)), new)
    with Ledger.open(path) as ledger:
        ledger.queue_added("wv0002", body_of(("3191234567", 90)), old)  # the same batch, again
    with Ledger.open(path) as ledger:
        block = ledger.blocks("wv0002", ["3191234567"])["3191234567"]
        assert block == Block("3191234567", 10, DAY)
        assert skip_verdict(block, 30, DAY, server="wv0002") is None  # sent again: right
        # and within one fold, in queue order, the newest wins too
        ledger.queue_added("wv0002", body_of(("3001112233", 7)), new)
        ledger.queue_added("wv0002", body_of(("3001112233", 70)), old)
        ledger.queue_added("wv0002", body_of(("3001112233", 3), ("3001112233", 5)), new)
        assert ledger.fold() == 4
        assert ledger.blocks("wv0002", ["3001112233"])["3001112233"].days == 5


def test_a_number_not_yet_folded_is_sent_again_never_skipped(tmp_path: Path, path: Path) -> None:
    """Until the fold, a confirmed number is not in blocks: the skip misses it (it is sent once
    more), and blocks never holds anything the server did not confirm."""
    journal_path = tmp_path / "journal.sqlite"
    with Journal.create(journal_path, run_id="R", meta={}) as journal:
        journal.add_outcomes(
            [Outcome("a.csv", "", 2, 1, "x", "30", "3191234567", 30, Status.READY, "valid", "")]
        )
        with Ledger.open(path) as ledger:
            ledger.queue_added("wv0002", body_of(("3191234567", 90)), AT)
            assert journal.skip_confirmed(path, "wv0002", DAY) == 0  # queued: not skipped
        assert journal.skip_confirmed(path, "wv0002", DAY) == 1  # folded at close


def test_an_unreadable_queued_body_is_left_out_and_the_rest_folded(path: Path) -> None:
    with Ledger.open(path) as ledger:
        ledger.queue_added("wv0002", b"not json", AT)
        ledger.queue_added(
            "wv0002",
            b'[{"telephone":"3191234567","days_block":"30"},{"telephone":"","days_block":"5"},'
            b'{"telephone":"3001112233","days_block":"0"},{"telephone":"3001112234","days_block":"x"},'
            b'{"telephone":"3001112235"},7]',
            AT,
        )
        assert ledger.fold() == 1
        assert sorted(ledger.blocks("wv0002", ["3191234567", "3001112233", "3001112234"])) == [
            "3191234567"
        ]


def test_queue_added_wants_the_time_with_its_zone(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="takes the time of the confirmation, with its time"):
        ledger.queue_added("wv0002", body_of(("3191234567", 30)), datetime(2026, 11, 28))


def test_a_version_1_ledger_is_upgraded_and_keeps_its_blocks(path: Path) -> None:
    raw = sqlite3.connect(path)
    raw.executescript(
        f"""
        PRAGMA application_id = {APPLICATION_ID};
        PRAGMA user_version = 1;
        CREATE TABLE servers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
        CREATE TABLE blocks (
            server_id INTEGER NOT NULL REFERENCES servers (id), telephone TEXT NOT NULL,
            days INTEGER NOT NULL CHECK (days > 0), added_on TEXT NOT NULL,
            PRIMARY KEY (server_id, telephone)
        ) WITHOUT ROWID;
        CREATE TABLE imports (
            sha256 TEXT PRIMARY KEY, path TEXT NOT NULL, run_id TEXT NOT NULL,
            imported_at TEXT NOT NULL
        );
        INSERT INTO servers VALUES (1, 'wv0002');
        INSERT INTO blocks VALUES (1, '3191234567', 90, '2026-11-28');
        """
    )
    raw.close()
    with Ledger.open(path) as ledger:
        assert ledger.blocks("wv0002", ["3191234567"]) == {
            "3191234567": Block("3191234567", 90, DAY)
        }
        # a confirmation later that day replaces the one known only by its date
        ledger.queue_added("wv0002", body_of(("3191234567", 5)), AT)
    with Ledger.open(path) as ledger:
        assert ledger.blocks("wv0002", ["3191234567"])["3191234567"].days == 5
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    raw.close()


def test_a_batch_confirmed_but_never_queued_is_queued_from_the_journal(
    tmp_path: Path, path: Path
) -> None:
    """A run killed between committing a verdict and queueing it in the ledger: the next send
    (or resume) queues it from the journal, once, with the time the journal recorded."""
    journal_path = tmp_path / "journal.sqlite"
    with Journal.create(journal_path, run_id="R", meta={}) as journal:
        journal.add_outcomes(
            Outcome("a.csv", "", r, 1, "x", "30", f"319123450{r}", 30 + r, Status.READY, "v", "")
            for r in range(2, 6)
        )
        items = list(journal.items())
        journal.begin_batch(1, items[:2])
        journal.record_batch(BatchResult(1, items[:2], Status.ADDED, "added", "ok"))
        journal.begin_batch(2, items[2:])
        journal.record_batch(BatchResult(2, items[2:], Status.REJECTED, "rejected", "no"))
        with Ledger.open(path) as ledger:
            assert _push_confirmed(journal, ledger, "wv0002") == 1
            assert _push_confirmed(journal, ledger, "wv0002") == 0  # marked: never twice
        with Ledger.open(path) as ledger:
            found = ledger.blocks("wv0002", [item.telephone for item in items])
        assert sorted((b.telephone, b.days) for b in found.values()) == [
            ("3191234502", 32),
            ("3191234503", 33),
        ]
        assert journal.unledgered_batches() == []
