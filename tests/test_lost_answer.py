"""A request whose answer was lost may still be running on the server: the token rests first.

Over real loopback HTTP against the simulator. A latency spike longer than the read timeout makes
the client give up on a request the simulator is still working on (it stores the numbers after
the spike, then answers to a closed connection). Wolkvox does not take one token twice at once,
and the simulator counts each request that arrives while another with the same token is in
flight (``violations``): it must stay 0, whether the token's next use is the retry or the next
run after one that gave up. Also: a signal during such a wait, or during a 429's backoff, stops
the run at once, and the lines say whether the server may have added the numbers.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from importer.client import build_url
from importer.config import ReportOptions, SendOptions, Token
from importer.errors import ExitCode
from importer.pipeline import (
    IN_FLIGHT_MESSAGE,
    NOT_ADDED_MESSAGE,
    RunRequest,
    resume_import,
    run_import,
)
from importer.simulator import Faults, Simulator, _Draws

TOKEN = "lost-answer-token-8Kd"
BATCH = 5
PHONES = [str(3001000000 + i) for i in range(3 * BATCH)]
READ_TIMEOUT = 0.3
SPIKE = 1.0
"""The spiked request runs this long on the server, well past the read timeout."""
GRACE = 1.5
"""--lost-answer-wait: longer than what is left of the spike after the timeout, with margin."""

StartSim = Callable[..., Simulator]


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNC_IMPORT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("WOLKVOX_SERVER", raising=False)


def spiking_seed(spiking: set[int], calls: int = 8, rate: float = 0.5) -> int:
    """A simulator seed whose add_dnc calls 1..``calls`` spike exactly at ``spiking``."""
    return next(
        seed
        for seed in range(100_000)
        if all(
            (_Draws.for_call(seed, call).spike < rate) == (call in spiking)
            for call in range(1, calls + 1)
        )
    )


def spiking_sim(
    simulator: StartSim, *spiking: int, spike: float = SPIKE, **config: Any
) -> Simulator:
    faults = Faults(spike_rate=0.5, spike_latency=spike)
    return simulator(token=TOKEN, faults=faults, seed=spiking_seed(set(spiking)), **config)


def write_numbers(path: Path) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("telefono;dias\n")
        out.writelines(f"{phone};30\n" for phone in PHONES)
    return path


def send_options(sim: Simulator, **changes: Any) -> SendOptions:
    url, key = build_url(None, sim.base_url)
    settings: dict[str, Any] = {
        "batch_size": BATCH, "retries": 4, "max_wait": 0.05, "lock_wait": 5.0,
        "read_timeout": READ_TIMEOUT, "lost_answer_wait": GRACE, **changes,
    }  # fmt: skip
    return SendOptions(url=url, token=Token(TOKEN), lock_key=key, **settings)


def read_lines(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "outcomes.csv").open(encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def read_summary(run_dir: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return summary


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def idle(sim: Simulator) -> bool:
    """Every request the simulator received has been decided (no handler still sleeping)."""
    return len(sim.requests()) == sim.calls


# --- the grace keeps the token out of use -----------------------------------------------------


def test_a_spike_past_the_read_timeout_is_retried_only_after_the_grace(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = spiking_sim(simulator, 2)  # batch 2's first request
    request = RunRequest(
        inputs=(str(write_numbers(tmp_path / "numeros.csv")),),
        report=ReportOptions(reports_dir=tmp_path / "reports"),
        send=send_options(sim),
    )
    done = run_import(request)
    wait_until(lambda: idle(sim))

    records = sim.requests()
    assert sim.violations == 0 and sim.max_in_flight == 1
    assert [record.outcome for record in records] == ["added"] * 4
    abandoned, retry = records[1], records[2]
    assert abandoned.end - abandoned.start >= SPIKE  # it stored batch 2 after the client left
    assert retry.start >= abandoned.end
    assert done.exit_code is ExitCode.OK
    lines = read_lines(done.run_dir)
    assert [(line["telephone"], line["status"]) for line in lines] == [
        (phone, "added") for phone in PHONES
    ]
    twice = sorted(phone for phone, count in Counter(sim.received()).items() if count > 1)
    assert twice == PHONES[BATCH : 2 * BATCH]
    assert (done.summary["sending"]["calls"], done.summary["sending"]["retries"]) == (4, 1)
    log = (done.run_dir / "run.log").read_text(encoding="utf-8")
    assert (
        f"retry 1/4 in {GRACE:.1f} s: no answer within {READ_TIMEOUT:g} s (ReadTimeout); the "
        f"server may still be working on that request, so the token rests {GRACE:.1f} s "
        "(--lost-answer-wait)"
    ) in log


def test_a_run_that_gives_up_holds_the_token_through_the_grace(
    simulator: StartSim, tmp_path: Path
) -> None:
    """With no retries left the run stops; the token (and its lock) is not given up, to the
    next run of this process or to another waiting for it, before the grace has passed."""
    sim = spiking_sim(simulator, 2)
    request = RunRequest(
        inputs=(str(write_numbers(tmp_path / "numeros.csv")),),
        report=ReportOptions(reports_dir=tmp_path / "reports"),
        send=send_options(sim, retries=0),
    )
    started = time.monotonic()
    stopped = run_import(request)
    took = time.monotonic() - started
    at_stop = read_lines(stopped.run_dir)
    resumed = resume_import(stopped.run_dir, Token(TOKEN))  # at once, with the same token
    wait_until(lambda: idle(sim))
    assert sim.violations == 0 and sim.max_in_flight == 1
    assert took >= READ_TIMEOUT + GRACE
    assert stopped.exit_code is ExitCode.STOPPED
    failed = [line for line in at_stop if line["status"] == "failed"]
    assert [line["telephone"] for line in failed] == PHONES[BATCH : 2 * BATCH]
    assert {line["message"] for line in failed} == {
        (
            f"{BATCH} numbers could not be sent to {sim.add_dnc_url} after 1 attempts (last: no "
            f"answer within {READ_TIMEOUT:g} s (ReadTimeout)); an attempt's answer was lost, so the "
            "server may have added them; the run stopped there: resume it later, or raise "
            "--retries/--max-wait"
        )
    }
    assert [record.outcome for record in sim.requests()] == ["added"] * 4
    assert resumed.exit_code is ExitCode.OK
    assert [line["status"] for line in read_lines(stopped.run_dir)] == ["added"] * len(PHONES)
    assert sorted(sim.dnc_list()) == PHONES


def test_a_batch_given_up_after_a_lost_answer_and_resumed_is_uncertain_not_rejected(
    simulator: StartSim, tmp_path: Path
) -> None:
    """The run gives batch 2 up (no retries) after its request's answer was lost; that request
    stored it. Resume sends it again and this server answers "none added": uncertain."""
    sim = spiking_sim(simulator, 2, reject_existing=True)
    request = RunRequest(
        inputs=(str(write_numbers(tmp_path / "numeros.csv")),),
        report=ReportOptions(reports_dir=tmp_path / "reports"),
        send=send_options(sim, retries=0),
    )
    stopped = run_import(request)
    assert stopped.exit_code is ExitCode.STOPPED
    resumed = resume_import(stopped.run_dir, Token(TOKEN))
    wait_until(lambda: idle(sim))
    assert resumed.exit_code is ExitCode.SOME_FAILED
    lines = read_lines(stopped.run_dir)
    statuses = [(line["status"], line["reason"]) for line in lines]
    assert statuses == (
        [("added", "added")] * BATCH
        + [("uncertain", "answer-lost")] * BATCH
        + [("added", "added")] * BATCH
    )
    assert lines[BATCH]["message"].startswith(
        "batch 3 holds numbers sent before the run stopped by a request whose answer was lost"
    )
    assert sim.violations == 0 and sorted(sim.dnc_list()) == PHONES


# --- a signal during a wait -------------------------------------------------------------------


def start_cli(sim: Simulator, source: Path, reports: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WOLKVOX_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    args = [
        "run", str(source), "--base-url", sim.base_url, "--reports-dir", str(reports),
        "--batch-size", str(BATCH), "--quiet", *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        [sys.executable, "-m", "importer", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def logged(reports: Path, text: str) -> bool:
    found = [path for path in reports.iterdir() if path.is_dir()] if reports.is_dir() else []
    log = found[0] / "run.log" if len(found) == 1 else None
    return log is not None and log.is_file() and text in log.read_text(encoding="utf-8")


def sigterm_when_logged(process: subprocess.Popen[bytes], reports: Path, text: str) -> float:
    """SIGTERM once run.log holds ``text``; the seconds the process took to end after it."""
    try:
        wait_until(lambda: logged(reports, text) or process.poll() is not None)
        assert process.poll() is None, process.communicate()
        process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        process.communicate(timeout=30)
        return time.monotonic() - signalled
    finally:
        process.kill()


def test_sigterm_during_the_grace_stops_at_once_and_says_the_numbers_may_be_added(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = spiking_sim(simulator, 1)
    reports = tmp_path / "reports"
    process = start_cli(
        sim, write_numbers(tmp_path / "numeros.csv"), reports,
        "--read-timeout", str(READ_TIMEOUT), "--lost-answer-wait", "60",
    )  # fmt: skip
    took = sigterm_when_logged(process, reports, "so the token rests 60.0 s")
    assert process.returncode == ExitCode.STOPPED
    assert took < 10  # not the 60 s of the grace
    [run_dir] = [path for path in reports.iterdir() if path.is_dir()]
    lines = read_lines(run_dir)
    in_flight = [(line["status"], line["reason"], line["message"]) for line in lines[:BATCH]]
    assert in_flight == [("not_sent", "interrupted", IN_FLIGHT_MESSAGE)] * BATCH
    stopped = read_summary(run_dir)["stopped"]["message"]
    assert stopped == (
        f"interrupted while waiting to retry {BATCH} numbers (last: no answer within "
        f"{READ_TIMEOUT:g} s (ReadTimeout)): an attempt's answer was lost, so the server may or "
        "may not have added them; resume the run to send what is left"
    )
    assert sim.calls == 1


def test_sigterm_during_a_429_backoff_says_the_numbers_were_not_added(
    simulator: StartSim, tmp_path: Path
) -> None:
    """No attempt lost its answer: the server answered 429 and added nothing. The batch's lines
    are not_sent (resume sends them) and say the server has not added them."""
    sim = simulator(token=TOKEN, faults=Faults(rate_429=1.0, retry_after=30.0))
    reports = tmp_path / "reports"
    process = start_cli(sim, write_numbers(tmp_path / "numeros.csv"), reports)
    took = sigterm_when_logged(process, reports, "retry 1/5 in 30.0 s: HTTP 429")
    assert process.returncode == ExitCode.STOPPED
    assert took < 10
    [run_dir] = [path for path in reports.iterdir() if path.is_dir()]
    lines = read_lines(run_dir)
    stopped = read_summary(run_dir)["stopped"]["message"]
    assert stopped.startswith(f"interrupted while waiting to retry {BATCH} numbers (last: HTTP 429")
    assert stopped.endswith("): the server has not added them; resume the run to send what is left")
    in_flight = [(line["status"], line["reason"], line["message"]) for line in lines[:BATCH]]
    assert in_flight == [("not_sent", "interrupted", NOT_ADDED_MESSAGE)] * BATCH
    rest = {(line["status"], line["reason"], line["message"]) for line in lines[BATCH:]}
    assert rest == {
        ("not_sent", "interrupted", f"not sent: {stopped}; `dnc-import resume` sends it later")
    }
    assert not any("may or may not" in line["message"] for line in lines)
    assert sim.calls == 1 and sim.dnc_list() == {}


# --- the rest outlives the process ------------------------------------------------------------


def only_run(reports: Path) -> Path:
    [run_dir] = [path for path in reports.iterdir() if path.is_dir()]
    return run_dir


def resumed_at_once(sim: Simulator, run_dir: Path) -> tuple[Any, float]:
    """``resume`` in this process as soon as the stopped run is gone; how long it took."""
    started = time.monotonic()
    resumed = resume_import(run_dir, Token(TOKEN))
    took = time.monotonic() - started
    wait_until(lambda: idle(sim))
    return resumed, took


def assert_resumed_after_the_abandoned_request(sim: Simulator, run_dir: Path) -> None:
    assert sim.violations == 0 and sim.max_in_flight == 1
    [abandoned] = [record for record in sim.requests() if record.call == 1]
    later = [record for record in sim.requests() if record.call > 1]
    assert abandoned.end - abandoned.start >= SPIKE and abandoned.stored  # it stored batch 1
    assert later and min(record.start for record in later) >= abandoned.end
    log = (run_dir / "run.log").read_text(encoding="utf-8")
    assert "before using the token: an earlier run" in log
    assert "stopped while a request of its may still be running on the server" in log


def kill_mid_request(sim: Simulator, tmp_path: Path) -> Path:
    """A run SIGKILLed while its first request (spiked 1 s) is out; read timeout 1.5 s, rest 0.5 s:
    the request may keep the token until 2 s after it began."""
    reports = tmp_path / "reports"
    process = start_cli(
        sim, write_numbers(tmp_path / "numeros.csv"), reports,
        "--read-timeout", "1.5", "--lost-answer-wait", "0.5",
    )  # fmt: skip
    try:
        wait_until(lambda: sim.calls == 1 and not idle(sim))
        process.kill()
        process.communicate(timeout=30)
    finally:
        process.kill()
    return only_run(reports)


def test_a_resume_right_after_a_kill_mid_request_waits_for_that_request(
    simulator: StartSim, tmp_path: Path
) -> None:
    """SIGKILL leaves the lock free at once; the note made before the request tells the resume
    how long that request may still hold the token on the server."""
    sim = spiking_sim(simulator, 1)
    run_dir = kill_mid_request(sim, tmp_path)
    resumed, took = resumed_at_once(sim, run_dir)
    assert_resumed_after_the_abandoned_request(sim, run_dir)
    assert took < 1.5 + 0.5 + 5  # the note's span caps the wait
    assert resumed.exit_code is ExitCode.OK
    assert sorted(sim.dnc_list()) == PHONES
    assert [line["status"] for line in read_lines(run_dir)] == ["added"] * len(PHONES)


def test_a_resume_right_after_sigterm_during_the_rest_waits_it_out(
    simulator: StartSim, tmp_path: Path
) -> None:
    """The in-process rest (after a read timeout) is cut short by SIGTERM, and the lock freed;
    the resume waits what was left of it before its first request."""
    sim = spiking_sim(simulator, 1, spike=2.0)
    reports = tmp_path / "reports"
    process = start_cli(
        sim, write_numbers(tmp_path / "numeros.csv"), reports,
        "--read-timeout", str(READ_TIMEOUT), "--lost-answer-wait", "2",
    )  # fmt: skip
    sigterm_when_logged(process, reports, "so the token rests 2.0 s")
    assert process.returncode == ExitCode.STOPPED
    run_dir = only_run(reports)
    resumed, _ = resumed_at_once(sim, run_dir)
    assert_resumed_after_the_abandoned_request(sim, run_dir)
    assert resumed.exit_code is ExitCode.OK
    assert [line["status"] for line in read_lines(run_dir)] == ["added"] * len(PHONES)


def test_a_batch_resent_by_resume_after_a_lost_answer_is_uncertain_not_rejected(
    simulator: StartSim, tmp_path: Path
) -> None:
    """The killed run's request stored batch 1; its resend by resume is answered "none added"
    (this server counts numbers already on its list as rejected). The first try may have added
    them: uncertain (answer-lost), as within one process, never rejected."""
    sim = spiking_sim(simulator, 1, reject_existing=True)
    run_dir = kill_mid_request(sim, tmp_path)
    resumed, _ = resumed_at_once(sim, run_dir)
    assert resumed.exit_code is ExitCode.SOME_FAILED
    lines = read_lines(run_dir)
    first = [(line["status"], line["reason"]) for line in lines[:BATCH]]
    assert first == [("uncertain", "answer-lost")] * BATCH
    assert {line["message"] for line in lines[:BATCH]} == {
        (
            "batch 2 holds numbers sent before the run stopped by a request whose answer was "
            "lost, and that request may have added them; then the server added none of the 5 "
            "numbers of batch 2 (server said: '0 telephones were added'); they may already be on "
            "the list or match one of its rules: check them with get_dnc"
        )
    }
    assert [line["status"] for line in lines[BATCH:]] == ["added"] * (len(PHONES) - BATCH)
    assert sorted(sim.dnc_list()) == PHONES
