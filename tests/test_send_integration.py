"""Issue 3 end to end over real loopback HTTP: the pipeline (and the CLI in a subprocess where
signals or two processes matter) against the local Wolkvox simulator.

Each test writes a small ``telefono;dias`` CSV to ``tmp_path``, runs an import and reads back
``outcomes.csv`` and ``summary.json`` to compare what every line says with what the simulator
holds and saw.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from importer.client import build_url
from importer.config import ReportOptions, SendOptions, Token
from importer.errors import ExitCode
from importer.journal import Journal
from importer.lock import token_lock
from importer.pipeline import RunRequest, RunResult, run_import
from importer.simulator import Faults, RequestRecord, Simulator

TOKEN = "integration-token-5Tq"
FIRST = 3001000000
INVALID = ("12345", "no tengo", "300100000012345")
"""Too short, not a number, too long: never sendable."""
FAST = {"retries": 4, "max_wait": 0.05, "lock_wait": 5.0, "lost_answer_wait": 0.05}
"""Retry waits of at most 50 ms, so fault tests stay fast (the simulator has finished a request
whose connection it dropped, so a short rest after a lost answer is enough here)."""
STORED = frozenset({"added", "drop-after", "garbage"})
"""Simulator outcomes of a request whose numbers were stored."""

StartSim = Callable[..., Simulator]


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lock folder of this test's own (for in-process runs and subprocesses alike)."""
    folder = tmp_path / "state"
    monkeypatch.setenv("DNC_IMPORT_STATE_DIR", str(folder))
    return folder


# --- helpers ---------------------------------------------------------------------------------


def phones(count: int, first: int = FIRST) -> list[str]:
    return [str(first + i) for i in range(count)]


def write_csv(path: Path, rows: list[tuple[str, int | str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("telefono;dias\n")
        for phone, days in rows:
            out.write(f"{phone};{days}\n")
    return path


def numbers_file(
    tmp_path: Path, count: int, *, invalid: tuple[str, ...] = (), days: int = 30
) -> tuple[Path, list[str]]:
    """A CSV of ``count`` valid mobiles (invalid ones spread among them); the valid ones."""
    valid = phones(count)
    rows: list[tuple[str, int | str]] = [(phone, days) for phone in valid]
    for index, bad in enumerate(invalid):
        rows.insert(min(len(rows), 1 + index * 7), (bad, days))
    return write_csv(tmp_path / "numeros.csv", rows), valid


@dataclass
class Run:
    result: RunResult
    lines: list[dict[str, str]]
    summary: dict[str, Any]

    def by_status(self, status: str) -> list[dict[str, str]]:
        return [line for line in self.lines if line["status"] == status]

    def phones(self, status: str) -> list[str]:
        return [line["telephone"] for line in self.by_status(status)]


def read_run(run_dir: Path) -> tuple[list[dict[str, str]], dict[str, Any]]:
    with (run_dir / "outcomes.csv").open(encoding="utf-8-sig", newline="") as stream:
        lines = list(csv.DictReader(stream))
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return lines, summary


def send_options(
    sim: Simulator, *, token: str = TOKEN, base_url: str = "", **changes: Any
) -> SendOptions:
    url, key = build_url(None, base_url or sim.base_url)
    settings: dict[str, Any] = {**FAST, **changes}
    return SendOptions(url=url, token=Token(token), lock_key=key, **settings)


def run(sim: Simulator, source: Path, tmp_path: Path, **send: Any) -> Run:
    request = RunRequest(
        inputs=(str(source),),
        report=ReportOptions(reports_dir=tmp_path / "reports"),
        send=send_options(sim, **send),
    )
    result = run_import(request)
    lines, summary = read_run(result.run_dir)
    assert summary["exit_code"] == int(result.exit_code)
    return Run(result, lines, summary)


def statuses(summary: dict[str, Any]) -> dict[str, int]:
    """The non-zero counts by status."""
    return {key: value for key, value in summary["counts"]["by_status"].items() if value}


def outcomes(sim: Simulator) -> list[str]:
    return [record.outcome for record in sim.requests()]


def stored_by_request(sim: Simulator) -> list[tuple[RequestRecord, list[str]]]:
    """Each request that stored numbers, with the telephones it stored (no rejection rules).

    Requests are answered one at a time, so ``received()`` holds their numbers in order.
    """
    received = sim.received()
    stored: list[tuple[RequestRecord, list[str]]] = []
    position = 0
    for record in sim.requests():
        if record.outcome in STORED:
            stored.append((record, received[position : position + record.records]))
            position += record.records
    assert position == len(received)
    return stored


def batches_with_a_lost_answer(sim: Simulator) -> list[int]:
    """The numbers of the batches (1-based, none split) that had a request whose answer was
    lost."""
    lost: list[int] = []
    batch = 1
    for kind in outcomes(sim):
        if kind == "drop-after" and batch not in lost:
            lost.append(batch)
        if kind in ("added", "garbage"):
            batch += 1
    return lost


def assert_sent_once_except_lost_answers(sim: Simulator) -> set[str]:
    """Every number stored once, except after a request whose answer never came; returns those
    sent twice or more."""
    seen: dict[str, list[str]] = {}
    for record, telephones in stored_by_request(sim):
        for telephone in telephones:
            seen.setdefault(telephone, []).append(record.outcome)
    again = {telephone for telephone, kinds in seen.items() if len(kinds) > 1}
    for telephone in again:
        assert all(kind == "drop-after" for kind in seen[telephone][:-1]), (telephone, seen)
    return again


# --- 1. a clean run --------------------------------------------------------------------------


def test_a_clean_run_adds_every_valid_number(simulator: StartSim, tmp_path: Path) -> None:
    sim = simulator(token=TOKEN)
    source, valid = numbers_file(tmp_path, 25, invalid=INVALID)
    done = run(sim, source, tmp_path, batch_size=10)

    assert done.result.exit_code is ExitCode.OK
    assert sim.dnc_list() == {phone: 30 for phone in valid}
    assert sorted(sim.received()) == valid
    assert [(r.records, r.outcome) for r in sim.requests()] == [
        (10, "added"), (10, "added"), (5, "added"),
    ]  # fmt: skip
    assert sim.violations == 0 and sim.connections == 1
    added = done.by_status("added")
    assert [line["telephone"] for line in added] == valid
    assert [line["batch"] for line in added] == ["1"] * 10 + ["2"] * 10 + ["3"] * 5
    assert {line["message"] for line in added if line["batch"] == "3"} == {
        "the server added all 5 numbers of batch 3"
    }
    invalid = done.by_status("invalid")
    assert sorted(line["raw_phone"] for line in invalid) == sorted(INVALID)
    assert {line["batch"] for line in invalid} == {""}
    assert statuses(done.summary) == {"added": 25, "invalid": 3}
    sending = done.summary["sending"]
    assert (sending["calls"], sending["retries"], sending["added"]) == (3, 0, 25)
    assert (sending["batches"], sending["in_flight"], sending["sent"]) == (3, 0, 25)
    assert done.summary["stopped"] is None


# --- 2. the error table ----------------------------------------------------------------------


def test_a_refused_token_stops_at_once_with_exit_4(simulator: StartSim, tmp_path: Path) -> None:
    sim = simulator(token=TOKEN)
    source, valid = numbers_file(tmp_path, 12, invalid=INVALID[:1])
    done = run(sim, source, tmp_path, token="not-the-token", batch_size=5)

    assert done.result.exit_code is ExitCode.AUTH
    assert outcomes(sim) == ["bad-token"]
    assert sim.dnc_list() == {} and sim.received() == []
    stopped = (
        f"the server at {sim.add_dnc_url} refused the token (HTTP 403 'PLEASE VALIDATE TOKEN "
        "Forbidden'): check WOLKVOX_TOKEN or --token-file, get a valid token from Wolkvox, "
        "then resume the run"
    )
    assert done.summary["stopped"] == {"reason": "token-refused", "message": stopped}
    not_sent = done.by_status("not_sent")
    assert [line["telephone"] for line in not_sent] == valid
    assert {line["reason"] for line in not_sent} == {"token-refused"}
    assert all(line["message"].startswith(f"not sent: {stopped}") for line in not_sent)
    assert all(line["batch"] == "" for line in not_sent)
    assert statuses(done.summary) == {"not_sent": 12, "invalid": 1}


def test_a_wrong_api_path_is_the_endpoint_error(simulator: StartSim, tmp_path: Path) -> None:
    sim = simulator(token=TOKEN)
    source, valid = numbers_file(tmp_path, 6)
    done = run(sim, source, tmp_path, base_url=f"{sim.base_url}/wrong", batch_size=5)

    url = f"{sim.base_url}/wrong/api/v2/campaign.php?api=add_dnc"
    assert done.result.exit_code is ExitCode.USAGE
    assert sim.calls == 0 and sim.dnc_list() == {}  # it never reached add_dnc
    assert done.summary["stopped"] == {
        "reason": "endpoint-refused",
        "message": f"the server at {url} does not know this API (HTTP 400 'THE API YOU WANT TO "
        "CONSULT DOES NOT EXIST Bad Request'): check --server/--base-url",
    }
    assert done.phones("not_sent") == valid
    assert {line["reason"] for line in done.lines} == {"endpoint-refused"}


def test_a_spent_quota_stops_with_exit_3_after_what_was_added(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN, daily_quota=2)
    source, valid = numbers_file(tmp_path, 17, invalid=INVALID)
    done = run(sim, source, tmp_path, batch_size=5)

    assert done.result.exit_code is ExitCode.STOPPED
    assert outcomes(sim) == ["added", "added", "quota"]
    assert done.phones("added") == valid[:10]
    assert {line["batch"] for line in done.by_status("added")} == {"1", "2"}
    assert done.phones("not_sent") == valid[10:]
    assert {line["reason"] for line in done.by_status("not_sent")} == {"quota-exhausted"}
    assert sim.dnc_list() == {phone: 30 for phone in valid[:10]}
    assert statuses(done.summary) == {"added": 10, "not_sent": 7, "invalid": 3}
    assert sum(statuses(done.summary).values()) == done.summary["counts"]["lines"] == 20
    assert done.summary["stopped"] == {
        "reason": "quota-exhausted",
        "message": "the token's daily call quota is spent (HTTP 403 'TOKEN LIMIT EXCEEDED "
        "Forbidden'): resume the run after the quota resets",
    }
    assert (done.summary["sending"]["calls"], done.summary["sending"]["added"]) == (3, 10)


@pytest.mark.parametrize(
    ("faults", "fault"),
    [
        (Faults(simultaneous_rate=0.5), "spurious-simultaneous"),
        (Faults(maintenance_calls=(2, 5)), "maintenance"),
        (Faults(error_5xx_rate=0.4), "5xx"),
        (Faults(rate_429=0.4, retry_after=0.01), "429"),
        (Faults(drop_rate=0.4), "drop"),
    ],
    ids=["simultaneous", "maintenance", "5xx", "429", "drop-before"],
)
def test_transient_answers_are_retried_and_the_run_finishes(
    simulator: StartSim, tmp_path: Path, faults: Faults, fault: str
) -> None:
    sim = simulator(token=TOKEN, faults=faults, seed=3)
    source, valid = numbers_file(tmp_path, 30)
    done = run(sim, source, tmp_path, batch_size=5, retries=6)

    seen = outcomes(sim)
    assert set(seen) == {"added", fault}, seen
    assert seen.count("added") == 6
    assert done.result.exit_code is ExitCode.OK
    assert done.phones("added") == valid
    assert sorted(sim.received()) == valid  # nothing was stored twice
    assert sim.dnc_list() == {phone: 30 for phone in valid}
    assert done.summary["sending"]["calls"] == len(seen)
    assert done.summary["sending"]["retries"] == seen.count(fault)
    assert sim.violations == 0


def test_a_lost_answer_sends_that_batch_again(simulator: StartSim, tmp_path: Path) -> None:
    sim = simulator(token=TOKEN, faults=Faults(drop_after_rate=0.4), seed=3)
    source, valid = numbers_file(tmp_path, 30)
    done = run(sim, source, tmp_path, batch_size=5, retries=6)

    seen = outcomes(sim)
    assert set(seen) == {"added", "drop-after"}, seen
    assert done.result.exit_code is ExitCode.OK
    assert done.phones("added") == valid
    twice = assert_sent_once_except_lost_answers(sim)
    lost = {
        t
        for record, batch in stored_by_request(sim)
        if record.outcome == "drop-after"
        for t in batch
    }
    assert twice == lost and lost
    assert Counter(Counter(sim.received()).values())[1] == len(valid) - len(lost)


def test_a_garbage_200_is_uncertain_and_never_resent(simulator: StartSim, tmp_path: Path) -> None:
    sim = simulator(token=TOKEN, faults=Faults(garbage_rate=1.0))
    source, valid = numbers_file(tmp_path, 8)
    done = run(sim, source, tmp_path, batch_size=5)

    assert outcomes(sim) == ["garbage", "garbage"]
    assert sorted(sim.received()) == valid  # each once
    assert done.result.exit_code is ExitCode.SOME_FAILED
    assert done.phones("uncertain") == valid
    assert {line["reason"] for line in done.lines} == {"no-counts"}
    said = '{"code": 201, "error": null, "msg": "3 telephones were add'
    assert done.by_status("uncertain")[0]["message"] == (
        f"the server accepted batch 1 (5 numbers) but gave no usable count of those added "
        f"(server said: {said!r}); check them with get_dnc"
    )
    assert done.summary["sending"]["retries"] == 0


def test_a_batch_failing_after_its_retries_stops_the_run(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN, faults=Faults(maintenance_calls=(2, 100)))
    source, valid = numbers_file(tmp_path, 14)
    done = run(sim, source, tmp_path, batch_size=5, retries=2)

    assert outcomes(sim) == ["added", "maintenance", "maintenance", "maintenance"]
    assert done.result.exit_code is ExitCode.STOPPED
    assert done.phones("added") == valid[:5]
    failed = done.by_status("failed")
    assert [line["telephone"] for line in failed] == valid[5:10]
    message = (
        f"5 numbers could not be sent to {sim.add_dnc_url} after 3 attempts (last: HTTP 403 "
        "'THE API IS TEMPORARILY UNAVAILABLE DUE TO MAINTENANCE (SERVER BACKUP) Forbidden'); "
        "the run stopped there: resume it later, or raise --retries/--max-wait"
    )
    assert {(line["reason"], line["message"], line["batch"]) for line in failed} == {
        ("batch-failed", message, "2")
    }
    assert done.phones("not_sent") == valid[10:]
    assert {line["reason"] for line in done.by_status("not_sent")} == {"previous-batch-failed"}
    assert sim.dnc_list() == {phone: 30 for phone in valid[:5]}
    assert statuses(done.summary) == {"added": 5, "failed": 5, "not_sent": 4}


# --- 3. the split of a malformed batch -------------------------------------------------------


def test_one_malformed_number_among_1000_sinks_only_itself(
    simulator: StartSim, tmp_path: Path
) -> None:
    bad = str(FIRST + 637)
    sim = simulator(token=TOKEN, malformed_patterns=(f"^{bad}$",))
    source, valid = numbers_file(tmp_path, 1000)
    done = run(sim, source, tmp_path, batch_size=1000)

    # halved 10 times down to the bad number alone: 11 refusals, 10 halves added
    seen = outcomes(sim)
    assert (seen.count("malformed"), seen.count("added"), len(seen)) == (11, 10, 21)
    good = [phone for phone in valid if phone != bad]
    assert sim.dnc_list() == {phone: 30 for phone in good}
    assert sorted(sim.received()) == good
    assert done.phones("added") == good
    [refused] = done.by_status("rejected")
    assert (refused["telephone"], refused["reason"]) == (bad, "refused-malformed")
    assert refused["message"] == (
        f"the server refused batch {refused['batch']} (1 numbers) as malformed after 10 splits: "
        "SOME PARAMETERS ARE REQUIRED Bad Request"
    )
    assert done.result.exit_code is ExitCode.SOME_FAILED
    assert statuses(done.summary) == {"added": 999, "rejected": 1}


# --- 4. rejections ---------------------------------------------------------------------------


def test_rejections_make_a_batch_uncertain_or_rejected(simulator: StartSim, tmp_path: Path) -> None:
    # batch 1: 3 of 10 rejected; batch 2: none; batch 3: all 10
    patterns = (r"^300100000[0-2]$", r"^30010000[2][0-9]$")
    sim = simulator(token=TOKEN, reject_patterns=patterns)
    source, valid = numbers_file(tmp_path, 30)
    done = run(sim, source, tmp_path, batch_size=10)

    assert done.result.exit_code is ExitCode.SOME_FAILED
    assert done.phones("uncertain") == valid[:10]
    assert {(line["reason"], line["message"]) for line in done.by_status("uncertain")} == {
        (
            "partial-batch",
            (
                "the server added 7 of 10 numbers of batch 1 and did not say which; check them "
                "with get_dnc"
            ),
        )
    }
    assert done.phones("added") == valid[10:20]
    assert done.phones("rejected") == valid[20:]
    assert {(line["reason"], line["message"]) for line in done.by_status("rejected")} == {
        (
            "rejected-by-server",
            (
                "the server added none of the 10 numbers of batch 3 (server said: '0 telephones "
                "were added'); they may already be on the list or match one of its rules: check "
                "them with get_dnc"
            ),
        )
    }
    assert sorted(sim.dnc_list()) == valid[3:20]
    sending = done.summary["sending"]
    assert (sending["added"], sending["rejected"], sending["sent"]) == (17, 13, 30)


# --- through the real entry point ------------------------------------------------------------


def cli(args: list[str], cwd: Path, token: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WOLKVOX_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    env.pop("WOLKVOX_SERVER", None)
    # A child started with SIGINT ignored (pytest run in the background) ignores Ctrl-C: a
    # handler here, unlike SIG_IGN, is reset to the default in the child.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "importer", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def run_args(sim: Simulator, source: Path, reports: Path, *extra: str) -> list[str]:
    return [
        "run", str(source), "--base-url", sim.base_url, "--reports-dir", str(reports),
        "--max-wait", "0.05", *extra,
    ]  # fmt: skip


def only_run_dir(reports: Path) -> Path:
    [run_dir] = [path for path in reports.iterdir() if path.is_dir()]
    return run_dir


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --- 5. Ctrl-C and SIGTERM -------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_run_cleanly(
    simulator: StartSim, tmp_path: Path, signum: signal.Signals
) -> None:
    sim = simulator(token=TOKEN, faults=Faults(latency=0.5))
    source, valid = numbers_file(tmp_path, 30)
    reports = tmp_path / "reports"
    process = cli(run_args(sim, source, reports, "--batch-size", "5"), tmp_path, TOKEN)
    try:
        wait_until(lambda: sim.calls >= 2)  # batch 1 answered, batch 2 in flight
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == ExitCode.STOPPED, stderr

    run_dir = only_run_dir(reports)
    assert stdout.decode() == f"run_id: {run_dir.name}\n"
    lines, summary = read_run(run_dir)
    # on a busy machine the signal may come a batch late: what was answered is what counts
    answered = sim.calls - 1
    assert answered >= 1
    assert summary["exit_code"] == 3
    assert summary["stopped"] == {
        "reason": "interrupted",
        "message": f"interrupted while 5 numbers were in flight to {sim.add_dnc_url}: the "
        "server may or may not have added them; resume the run to send what is left",
    }
    added = [line for line in lines if line["status"] == "added"]
    assert [line["telephone"] for line in added] == valid[: 5 * answered]
    assert [line["batch"] for line in added] == [
        str(batch) for batch in range(1, answered + 1) for _ in range(5)
    ]
    rest = [line for line in lines if line["status"] != "added"]
    assert [line["telephone"] for line in rest] == valid[5 * answered :]
    assert {(line["status"], line["reason"]) for line in rest} == {("not_sent", "interrupted")}
    time.sleep(0.6)  # the request in flight has had its answer by now; nothing followed it
    assert sim.calls == answered + 1
    with Journal.open(run_dir / "journal.sqlite") as journal:
        assert journal.counts_by_status()["not_sent"] == 30 - 5 * answered
        assert journal.batch_totals()["batches"] == answered
        # the batch in flight stays so, for resume to send again
        assert journal.in_flight_batches() == [answered + 1]
        assert len(journal.batch_line_ids(answered + 1)) == 5


# --- 6. the token is nowhere -----------------------------------------------------------------


def files_under(*folders: Path) -> list[Path]:
    return sorted(path for folder in folders for path in folder.rglob("*") if path.is_file())


def assert_token_nowhere(token: str, outputs: list[bytes], files: list[Path]) -> None:
    needles = [token.encode(), token.encode("utf-16-le")]
    for index, output in enumerate(outputs):
        assert not any(needle in output for needle in needles), f"output {index}"
    for path in files:
        data = path.read_bytes()
        assert not any(needle in data for needle in needles), str(path)


def test_the_token_is_in_no_output_and_no_file(
    simulator: StartSim, tmp_path: Path, sim_token: str, state_dir: Path
) -> None:
    faults = Faults(
        error_5xx_rate=0.15, rate_429=0.15, retry_after=0.01, garbage_rate=0.15,
        drop_rate=0.15, drop_after_rate=0.15, simultaneous_rate=0.1,
    )  # fmt: skip
    sim = simulator(token=sim_token, faults=faults, seed=3)
    source, _ = numbers_file(tmp_path, 60, invalid=INVALID)
    reports = tmp_path / "reports"
    args = run_args(
        sim, source, reports, "--batch-size", "5", "--retries", "20", "--verbose",
        "--lost-answer-wait", "0.05",
    )  # fmt: skip
    stdout, stderr = cli(args, tmp_path, sim_token).communicate(timeout=60)
    assert b"run_id: " in stdout
    seen = set(outcomes(sim))
    assert {"5xx", "429", "garbage", "drop", "drop-after", "spurious-simultaneous"} <= seen

    # and a run whose token is refused, with its traceback
    refused = simulator(token="another-token")
    args = run_args(refused, source, reports, "--verbose")
    process = cli(args, tmp_path, sim_token)
    stdout2, stderr2 = process.communicate(timeout=60)
    assert process.returncode == ExitCode.AUTH
    assert outcomes(refused) == ["bad-token"]

    files = files_under(reports, state_dir)
    names = {path.name for path in files}
    assert {"journal.sqlite", "outcomes.csv", "errors.csv", "summary.json"} <= names
    assert len([path for path in files if path.name == "summary.json"]) == 2
    assert any(path.suffix == ".lock" for path in files)  # the lock folder was searched too
    assert_token_nowhere(sim_token, [stdout, stderr, stdout2, stderr2], files)


# --- 7. the lock -----------------------------------------------------------------------------


def test_two_runs_with_one_token_never_overlap(simulator: StartSim, tmp_path: Path) -> None:
    sim = simulator(token=TOKEN, faults=Faults(latency=0.1))
    first = write_csv(tmp_path / "a.csv", [(p, 30) for p in phones(50)])
    second = write_csv(tmp_path / "b.csv", [(p, 60) for p in phones(50, FIRST + 1000)])
    processes = [
        cli(run_args(sim, source, tmp_path / f"reports-{source.stem}", "--batch-size", "5"),
            tmp_path, TOKEN)
        for source in (first, second)
    ]  # fmt: skip
    results = [process.communicate(timeout=60) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], results

    assert sim.violations == 0 and sim.max_in_flight == 1
    assert sim.calls == 20
    expected = {p: 30 for p in phones(50)} | {p: 60 for p in phones(50, FIRST + 1000)}
    assert sim.dnc_list() == expected
    waited = [b"is sending with this token; waiting up to 300 s" in err for _, err in results]
    assert sorted(waited) == [False, True]  # one of them had to wait for the other


def test_a_run_that_cannot_get_the_lock_sends_nothing(simulator: StartSim, tmp_path: Path) -> None:
    sim = simulator(token=TOKEN)
    source, valid = numbers_file(tmp_path, 6)
    reports = tmp_path / "reports"
    _, key = build_url(None, sim.base_url)
    before = datetime.now(UTC).strftime("%H:%M:%S")
    with token_lock(key, Token(TOKEN), wait=0):
        after = datetime.now(UTC).strftime("%H:%M:%S")
        process = cli(run_args(sim, source, reports, "--lock-wait", "0.5"), tmp_path, TOKEN)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == ExitCode.STOPPED
    shown = stderr.decode().splitlines()[0]
    holder = f"another dnc-import run (pid {os.getpid()} on host {socket.gethostname()}, since "
    assert shown in {
        f"{holder}{since} UTC) is sending with this token; waiting up to 0.5 s (--lock-wait)"
        for since in (before, after)
    }
    message = (
        f"{shown.split(') is sending')[0]}) still held this token after 0.5 s (--lock-wait); "
        "nothing was sent; run again when it has finished, or raise --lock-wait"
    )
    assert sim.calls == 0 and sim.dnc_list() == {}
    lines, summary = read_run(only_run_dir(reports))
    assert [line["telephone"] for line in lines] == valid
    assert {(line["status"], line["reason"]) for line in lines} == {("not_sent", "token-busy")}
    assert summary["stopped"] == {"reason": "token-busy", "message": message}


# --- 8. done when ----------------------------------------------------------------------------


def test_with_every_fault_on_nothing_is_lost_and_every_line_matches_the_server(
    simulator: StartSim, tmp_path: Path
) -> None:
    faults = Faults(
        error_5xx_rate=0.1, rate_429=0.1, retry_after=0.01, drop_rate=0.1,
        drop_after_rate=0.1, garbage_rate=0.1, simultaneous_rate=0.1,
    )  # fmt: skip
    sim = simulator(token=TOKEN, faults=faults, seed=2)
    valid = phones(3000)
    rows: list[tuple[str, int | str]] = [(phone, 30) for phone in valid]
    for index, bad in enumerate(INVALID * 5):
        rows.insert(index * 150, (bad, 30))
    rows += [(valid[7], 400), (valid[2500], 10)]  # duplicates: the longest block is kept
    source = write_csv(tmp_path / "numeros.csv", rows)
    done = run(sim, source, tmp_path, batch_size=200, retries=20)

    seen = Counter(outcomes(sim))
    kinds = {"5xx", "429", "drop", "drop-after", "garbage", "spurious-simultaneous"}
    assert kinds <= set(seen), seen
    assert "malformed" not in seen and sim.violations == 0
    # nothing lost: one outcome line per input row, none left unsent
    assert sorted(int(line["row"]) for line in done.lines) == list(range(2, len(rows) + 2))
    assert done.summary["counts"]["lines"] == len(rows)
    assert not done.by_status("not_sent") and not done.by_status("failed")
    assert len(done.by_status("invalid")) == 15
    assert len(done.by_status("duplicate")) == 2
    # no invalid number sent; none sent twice except after a lost answer
    assert set(sim.received()) == set(valid)
    twice = assert_sent_once_except_lost_answers(sim)
    assert len(twice) == 200 * seen["drop-after"]
    # every line's status matches the list
    listed = sim.dnc_list()
    added = {line["telephone"]: int(line["days_block"]) for line in done.by_status("added")}
    uncertain = set(done.phones("uncertain"))
    assert added.items() <= listed.items()
    assert set(listed) - set(added) == uncertain
    assert len(uncertain) == 200 * seen["garbage"]
    assert listed[valid[7]] == 400 and listed[valid[2500]] == 30
    assert len(added) + len(uncertain) == 3000
    assert done.result.exit_code is ExitCode.SOME_FAILED


def test_the_cli_says_the_run_id_on_stdout_and_the_summary_on_stderr(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN)
    source, valid = numbers_file(tmp_path, 7)
    reports = tmp_path / "reports"
    process = cli(run_args(sim, source, reports, "--batch-size", "5"), tmp_path, TOKEN)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    run_dir = only_run_dir(reports)
    assert stdout.decode() == f"run_id: {run_dir.name}\n"
    assert b"Sent: 2 calls (0 retries), server added 7" in stderr
    assert sim.dnc_list() == {phone: 30 for phone in valid}


def test_a_resent_batch_refused_as_already_listed_is_uncertain_not_rejected(
    simulator: StartSim, tmp_path: Path
) -> None:
    """A server that rejects numbers already on its list answers "0 added" to the resend of a
    batch whose first answer was lost, though the first try added them all: never `rejected`."""
    faults = Faults(drop_after_rate=0.4)
    sim = simulator(token=TOKEN, faults=faults, seed=3, reject_existing=True)
    source, valid = numbers_file(tmp_path, 30)
    done = run(sim, source, tmp_path, batch_size=5, retries=6)

    lost = batches_with_a_lost_answer(sim)
    assert lost == [2, 3, 4, 5], outcomes(sim)
    assert sorted(sim.dnc_list()) == valid
    assert not done.by_status("rejected")
    uncertain = done.by_status("uncertain")
    assert [line["batch"] for line in uncertain] == [str(batch) for batch in lost for _ in range(5)]
    assert sorted(done.phones("added") + done.phones("uncertain")) == valid
    assert {line["reason"] for line in uncertain} == {"answer-lost"}
    first = uncertain[0]["batch"]
    assert uncertain[0]["message"] == (
        f"batch {first} was sent again after its answer was lost, and the first try may have "
        f"added its numbers; then the server added none of the 5 numbers of batch {first} "
        "(server said: '0 telephones were added'); they may already be on the list or match "
        "one of its rules: check them with get_dnc"
    )
    assert done.result.exit_code is ExitCode.SOME_FAILED
