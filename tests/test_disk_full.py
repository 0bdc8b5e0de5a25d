"""Issue 6: a reports folder that cannot be written, and a disk that fills up before or during a run.

Before anything is sent: exit 2, one line ``Error: ...`` naming the folder, nothing sent, no run
folder left behind. Mid-run (the disk fills while sending, or while the reports are written):
exit 3, one line that says how to resume; the journal is the truth, so once there is space again
``dnc-import resume`` sends what was not confirmed (at most the batch in flight again) and writes
the reports. The run is a real ``python -m importer`` subprocess against the local simulator.

The full disk is real where the machine allows it (root, as in CI): a 32 MiB tmpfs mounted in a
mount namespace of its own (``unshare -m``), the CLI entered into it with ``nsenter``, read from
outside through ``/proc/PID/root``; the test fills it with a ballast file at the chosen moment
(the run is held with SIGSTOP meanwhile) and frees it by deleting the ballast. Elsewhere the same
moment is simulated by lowering the running process's RLIMIT_FSIZE (writes then fail with EFBIG).
An unwritable folder is a mode-0500 folder for a normal user, an immutable one (``chattr +i``)
for root, whom modes do not stop.
"""

from __future__ import annotations

import csv
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from importer.simulator import Faults, Simulator

TOKEN = "disk-token-Hq2-DISTINCT"
BATCH = 100
VALID = [str(3001000000 + i) for i in range(4000)]
BATCHES = len(VALID) // BATCH
StartSim = Callable[..., Simulator]


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNC_IMPORT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WOLKVOX_TOKEN", TOKEN)
    monkeypatch.delenv("WOLKVOX_SERVER", raising=False)


def write_numbers(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("telefono;dias\n")
        out.writelines(f"{phone};30\n" for phone in VALID)
    return path


IGNORING_SIGXFSZ = (
    "import runpy, signal, sys\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "sys.argv[0] = 'dnc-import'\n"
    "runpy.run_module('importer', run_name='__main__', alter_sys=True)\n"
)
"""``python -m importer`` that gets EFBIG past its file size limit instead of dying of SIGXFSZ,
as a program that handles a full disk does."""
LIMITING = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, "


def start(
    args: Sequence[str],
    *,
    prefix: Sequence[str] = (),
    ignore_sigxfsz: bool = False,
    file_limit: int | None = None,
) -> subprocess.Popen[bytes]:
    """``python -m importer ARGS``; ``file_limit``: no file written past that many bytes, from
    the start (RLIMIT_FSIZE: writes then fail with EFBIG, as on a full disk)."""
    program = ["-m", "importer"]
    if ignore_sigxfsz or file_limit is not None:
        limit = "" if file_limit is None else f"{LIMITING}({file_limit}, {file_limit}))\n"
        program = ["-c", limit + IGNORING_SIGXFSZ]
    return subprocess.Popen(
        [*prefix, sys.executable, *program, *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run_args(sim: Simulator, source: Path, reports: Path, *extra: str) -> list[str]:
    return [
        "run", str(source), "--base-url", sim.base_url, "--reports-dir", str(reports),
        "--batch-size", str(BATCH), "--max-wait", "0.05", "--quiet", *extra,
    ]  # fmt: skip


def finish(process: subprocess.Popen[bytes]) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, stderr.decode()


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def folders(reports: Path) -> list[Path]:
    return sorted(p for p in reports.iterdir() if p.is_dir()) if reports.is_dir() else []


def logged(reports: Path, text: str) -> bool:
    """run.log of the only run holds ``text`` (log lines are written as they happen)."""
    found = folders(reports)
    if len(found) != 1 or not (found[0] / "run.log").is_file():
        return False
    return text in (found[0] / "run.log").read_text(encoding="utf-8", errors="replace")


def read_lines(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "outcomes.csv").open(encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def assert_one_line(stderr: str) -> str:
    assert stderr.startswith("Error: ") and stderr.endswith("\n"), stderr
    assert stderr.count("\n") == 1, stderr
    return stderr[len("Error: ") : -1]


def assert_resumable_stop(code: int, stderr: str, run_id: str) -> None:
    assert code == 3, stderr
    message = assert_one_line(stderr)
    assert message.endswith(
        f"; run {run_id} had begun sending: nothing is lost (its journal holds every line), "
        f"once that is fixed `dnc-import resume {run_id}` finishes it"
    ), message


def assert_complete(
    run_dir: Path, sim: Simulator, stops: int = 1, *, skipped_in_flight: bool = True
) -> None:
    """Every number once in the reports and on the list; at most one batch per stop sent twice
    (the one in flight).

    Every line ``added``, except (``skipped_in_flight``) at most the batch in flight per stop,
    which may be ``skipped`` as ``already-blocked``: the ledger can get a verdict the journal
    could not write (see test_the_ledger_never_gets_a_verdict_the_journal_could_not_write).
    """
    lines = read_lines(run_dir)
    assert sorted(line["telephone"] for line in lines) == VALID
    statuses = Counter(line["status"] for line in lines)
    skipped = [line for line in lines if line["status"] == "skipped"]
    assert statuses == {
        "added": len(VALID) - len(skipped),
        **({"skipped": len(skipped)} if skipped else {}),
    }
    assert len(skipped) <= (stops * BATCH if skipped_in_flight else 0)
    assert {line["reason"] for line in skipped} <= {"already-blocked"}
    assert set(sim.dnc_list()) == set(VALID)
    twice = [phone for phone, count in Counter(sim.received()).items() if count > 1]
    assert len(twice) <= stops * BATCH, len(twice)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["counts"]["lines"] == len(lines) and summary["exit_code"] == 0
    assert summary["stopped"] is None


# --- a folder that cannot be written, before anything is sent -------------------------------


def test_a_file_where_the_reports_folder_should_be_sends_nothing(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN)
    source = write_numbers(tmp_path / "numeros.csv")
    (tmp_path / "taken").write_text("a file, not a folder\n")
    reports = tmp_path / "taken" / "reports"
    code, stderr = finish(start(run_args(sim, source, reports)))
    assert code == 2
    assert stderr == (
        f"Error: reports folder {reports} cannot be written (Not a directory): give "
        "--reports-dir a folder you can write\n"
    )
    assert sim.calls == 0


def test_a_file_given_as_the_reports_folder_is_one_line_and_sends_nothing(
    simulator: StartSim, tmp_path: Path
) -> None:
    """Not click's three-line usage error: the same one line as any unwritable folder."""
    sim = simulator(token=TOKEN)
    source = write_numbers(tmp_path / "numeros.csv")
    reports = tmp_path / "taken"
    reports.write_text("a file, not a folder\n")
    code, stderr = finish(start(run_args(sim, source, reports)))
    assert code == 2
    assert stderr == (
        f"Error: reports folder {reports} cannot be written (File exists): give "
        "--reports-dir a folder you can write\n"
    )
    assert sim.calls == 0


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder this process cannot create anything in, and the reason the OS gives."""
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder, "Permission denied"
        folder.chmod(0o700)
        return
    if shutil.which("chattr") is None:
        pytest.skip("root ignores modes and there is no chattr to make a folder immutable")
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not supported here: {made.stderr.decode().strip()}")
    try:
        yield folder, "Operation not permitted"
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("inside", [False, True], ids=["the-folder", "a-folder-inside"])
def test_an_unwritable_reports_folder_sends_nothing(
    simulator: StartSim, tmp_path: Path, unwritable: tuple[Path, str], inside: bool
) -> None:
    folder, why = unwritable
    reports = folder / "reports" if inside else folder
    sim = simulator(token=TOKEN)
    source = write_numbers(tmp_path / "numeros.csv")
    code, stderr = finish(start(run_args(sim, source, reports)))
    assert code == 2
    assert stderr == (
        f"Error: reports folder {reports} cannot be written ({why}): give --reports-dir a "
        "folder you can write\n"
    )
    assert sim.calls == 0
    assert list(folder.iterdir()) == []


# --- a disk that fills up ---------------------------------------------------------------------


class SmallDisk:
    """A 32 MiB tmpfs in a mount namespace of its own, mounted on ``path``."""

    SIZE = "32m"

    def __init__(self, path: Path) -> None:
        path.mkdir()
        script = (
            f'mount -t tmpfs -o size={self.SIZE} tmpfs "{path}" && echo ready && exec sleep 300'
        )
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.holder.stdout is not None
        ready = self.holder.stdout.readline()
        if ready != b"ready\n":
            self.holder.kill()
            _, err = self.holder.communicate()
            pytest.skip(f"no tmpfs can be mounted here: {err.decode().strip()}")
        self.path = path
        self.outside = Path(f"/proc/{self.holder.pid}/root{path}")
        """The same folder as this process sees it."""
        self.prefix = ("nsenter", "--mount", "--target", str(self.holder.pid))
        """Runs a command inside the namespace (SQLite resolves /proc/PID/root, so the CLI must
        run there)."""

    def fill(self) -> None:
        try:
            with (self.outside / "ballast").open("ab") as out:
                while True:
                    out.write(b"\0" * (1 << 20))
                    out.flush()
        except OSError as exc:
            assert exc.errno == 28, exc  # ENOSPC: the disk is full

    def free(self) -> None:
        (self.outside / "ballast").unlink()

    def close(self) -> None:
        self.holder.kill()
        self.holder.communicate()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if shutil.which("unshare") is None or shutil.which("nsenter") is None:
        pytest.skip("unshare/nsenter (util-linux) are not installed")
    disk = SmallDisk(tmp_path / "disk")
    try:
        yield disk
    finally:
        disk.close()


def held(process: subprocess.Popen[bytes], action: Callable[[], None]) -> None:
    """``action`` while the process is stopped (SIGSTOP), so it lands between two of its steps."""
    process.send_signal(signal.SIGSTOP)
    try:
        action()
    finally:
        process.send_signal(signal.SIGCONT)


def test_a_disk_already_full_stops_before_anything_is_sent(
    simulator: StartSim, tmp_path: Path, small_disk: SmallDisk
) -> None:
    sim = simulator(token=TOKEN)
    source = write_numbers(tmp_path / "numeros.csv")
    small_disk.fill()
    reports = small_disk.path / "reports"
    code, stderr = finish(start(run_args(sim, source, reports), prefix=small_disk.prefix))
    assert code == 2
    message = assert_one_line(stderr)
    assert message.startswith(f"run journal {reports}/"), message
    assert "(database or disk is full)" in message and "check the disk has space" in message
    assert sim.calls == 0
    assert folders(small_disk.outside / "reports") == []  # no half-made run left behind


@pytest.mark.parametrize(
    ("when", "extra"),
    [
        (f"batch {BATCHES // 4}: ", ()),
        (f"batch {BATCHES}: ", ("--xlsx",)),  # the last verdict: the reports come next
    ],
    ids=["while-sending", "while-writing-the-reports"],
)
def test_a_disk_that_fills_mid_run_loses_nothing_and_resume_finishes(
    simulator: StartSim,
    tmp_path: Path,
    small_disk: SmallDisk,
    when: str,
    extra: tuple[str, ...],
) -> None:
    sim = simulator(token=TOKEN, faults=Faults(latency=0.01))
    source = write_numbers(tmp_path / "numeros.csv")
    reports, seen = small_disk.path / "reports", small_disk.outside / "reports"
    process = start(run_args(sim, source, reports, *extra), prefix=small_disk.prefix)
    wait_until(lambda: logged(seen, when) or process.poll() is not None)
    held(process, small_disk.fill)
    code, stderr = finish(process)
    [run_dir] = folders(seen)
    assert_resumable_stop(code, stderr, run_dir.name)
    assert not (run_dir / "summary.json").exists()
    assert_no_report_cut_short(run_dir)
    sent = len(sim.received())

    small_disk.free()
    resume = ["resume", run_dir.name, "--reports-dir", str(reports), "--quiet"]
    code, stderr = finish(start(resume, prefix=small_disk.prefix))
    assert (code, stderr) == (0, "")
    assert_complete(run_dir, sim)
    if "--xlsx" in extra:  # every verdict was committed: nothing goes again
        assert len(sim.received()) == sent
        assert (run_dir / "outcomes.xlsx").stat().st_size > 0


def assert_no_report_cut_short(run_dir: Path) -> None:
    """Reports are written under a temporary name and put in place whole (os.replace)."""
    assert not list(run_dir.glob(".*.partial"))
    if (run_dir / "outcomes.csv").exists():
        assert len(read_lines(run_dir)) == len(VALID)


def test_the_ledger_never_gets_a_verdict_the_journal_could_not_write(
    simulator: StartSim, tmp_path: Path, small_disk: SmallDisk
) -> None:
    """The journal is the truth and the ledger is fed from it: a batch the server answered but
    whose verdict the full disk kept out of the journal is sent again on resume and reported
    ``added``, never ``skipped`` as already blocked by this very run."""
    sim = simulator(token=TOKEN, faults=Faults(latency=0.01))
    source = write_numbers(tmp_path / "numeros.csv")
    reports, seen = small_disk.path / "reports", small_disk.outside / "reports"
    process = start(run_args(sim, source, reports), prefix=small_disk.prefix)
    wait_until(lambda: logged(seen, f"batch {BATCHES // 4}: ") or process.poll() is not None)
    held(process, small_disk.fill)
    code, _ = finish(process)
    assert code == 3
    small_disk.free()
    [run_dir] = folders(seen)
    resume = ["resume", run_dir.name, "--reports-dir", str(reports), "--quiet"]
    assert finish(start(resume, prefix=small_disk.prefix)) == (0, "")
    assert_complete(run_dir, sim, skipped_in_flight=False)


def fail_writes(process: subprocess.Popen[bytes]) -> None:
    """From now on the process cannot write past 64 KiB of any file (EFBIG), as on a full disk."""

    def lower_the_limit() -> None:
        resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))

    held(process, lower_the_limit)


@pytest.mark.parametrize("how", ["run", "inbox"])
def test_writes_that_fail_mid_send_without_root_lose_nothing(
    simulator: StartSim, tmp_path: Path, how: str
) -> None:
    """The same moment without a tmpfs: the running process's RLIMIT_FSIZE drops to 64 KiB, so
    its next write past that (the journal, run.log) fails with EFBIG. Also for an unattended
    run over an inbox (its file was archived before the first batch: the journal has it)."""
    sim = simulator(token=TOKEN, faults=Faults(latency=0.01))
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    args = run_args(sim, source, reports)
    if how == "inbox":
        inbox = tmp_path / "inbox"
        inbox.mkdir()
        source = source.rename(inbox / source.name)
        os.utime(source, (time.time() - 60, time.time() - 60))  # written a minute ago
        args = [arg for arg in args if arg != str(tmp_path / "numeros.csv")] + [
            "--inbox",
            str(inbox),
        ]
    process = start(args, ignore_sigxfsz=True)
    wait_until(lambda: logged(reports, f"batch {BATCHES // 4}: ") or process.poll() is not None)
    fail_writes(process)
    code, stderr = finish(process)
    [run_dir] = folders(reports)
    assert_resumable_stop(code, stderr, run_dir.name)
    if how == "inbox":
        assert [p.parent.name for p in (tmp_path / "inbox").rglob("*.csv")] == ["archive"]
    code, stderr = finish(start(["resume", run_dir.name, "--reports-dir", str(reports), "-q"]))
    if how == "inbox":  # the file was archived: the journal holds its rows
        assert stderr == f"{source} is no longer there; resuming from the journal alone\n"
    assert (code, stderr if how == "run" else "") == (0, "")
    assert_complete(run_dir, sim)


def test_a_resume_whose_writes_fail_mid_send_stops_with_exit_3_and_resumes_again(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN, faults=Faults(latency=0.01))
    source, reports = write_numbers(tmp_path / "numeros.csv"), tmp_path / "reports"
    rest = ("--read-timeout", "2", "--lost-answer-wait", "0.05")  # a stop mid-request: 2.05 s
    rest_told = re.compile(r"^waiting [0-9.]+ s before using the token: [^\n]*\n", re.MULTILINE)
    first = start(run_args(sim, source, reports, *rest))
    wait_until(lambda: logged(reports, "batch 3: ") or first.poll() is not None)
    first.send_signal(signal.SIGTERM)
    code, stderr = finish(first)
    assert code == 3, stderr  # stopped cleanly: resumable
    [run_dir] = folders(reports)
    resume = ["resume", run_dir.name, "--reports-dir", str(reports), "--quiet"]
    process = start(resume, ignore_sigxfsz=True)
    wait_until(lambda: logged(reports, f"batch {BATCHES // 2}: ") or process.poll() is not None)
    fail_writes(process)
    code, stderr = finish(process)
    assert_resumable_stop(code, rest_told.sub("", stderr), run_dir.name)  # the token rested
    code, stderr = finish(start(resume))
    assert (code, rest_told.sub("", stderr)) == (0, "")
    assert_complete(run_dir, sim, stops=2)
