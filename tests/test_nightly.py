"""Issue 4, the unattended life: ``run --config``, ``--inbox``, the ledger, ``--keep-days``,
``check-config``, ``--json`` and run.log, end to end against the local simulator.

Runs go through the real command (click's CliRunner in process; a ``python -m importer``
subprocess where a kill matters). Every test has its own state folder (ledger and token locks)
through ``DNC_IMPORT_STATE_DIR``. Inbox files are dated a minute back, since a file modified in
the last seconds is taken as still being written.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from benchmarks.cli_runs import read_lines, read_summary
from importer.cli import cli
from importer.client import build_url
from importer.errors import ExitCode
from importer.journal import Journal
from importer.ledger import Ledger
from importer.simulator import Faults, SimConfig, Simulator

TOKEN = "nightly-token-Hh4-DISTINCT"
FIRST = 3002000000
RUN_ID = r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}"

StartSim = Callable[..., Simulator]


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNC_IMPORT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WOLKVOX_TOKEN", TOKEN)
    monkeypatch.delenv("WOLKVOX_SERVER", raising=False)


# --- helpers ---------------------------------------------------------------------------------


def phones(count: int, first: int = FIRST) -> list[str]:
    return [str(first + i) for i in range(count)]


def write_csv(path: Path, numbers: Sequence[str], days: int = 30, *, aged: bool = True) -> Path:
    """A ``telefono;dias`` export; ``aged``: dated a minute back (settled, ready to import)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("telefono;dias\n")
        out.writelines(f"{phone};{days}\n" for phone in numbers)
    if aged:
        age(path)
    return path


def age(path: Path, seconds: float = 60.0) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def write_config(path: Path, **keys: object) -> Path:
    lines = []
    for key, value in keys.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {'true' if value else 'false'}")
        elif isinstance(value, (int, float)):
            lines.append(f"{key} = {value}")
        elif isinstance(value, list):
            lines.append(f"{key} = {json.dumps([str(item) for item in value])}")
        else:
            lines.append(f"{key} = {json.dumps(str(value))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def nightly_config(tmp_path: Path, sim: Simulator, **keys: object) -> Path:
    """The config of a nightly run against ``sim``: inbox/, reports/ and state/ beside it."""
    settings: dict[str, object] = {
        "base_url": sim.base_url,
        "inbox": "inbox",
        "reports_dir": "reports",
        "state_dir": "state",
        "batch_size": 10,
        "max_wait": 0.05,
        "lock_wait": 10,
        **keys,
    }
    (tmp_path / "inbox").mkdir(exist_ok=True)
    return write_config(tmp_path / "nightly.toml", **settings)


def invoke(args: Sequence[str]) -> Result:
    return CliRunner().invoke(cli, list(args))


def run_dirs(reports: Path) -> list[Path]:
    return sorted(path for path in reports.iterdir() if path.is_dir()) if reports.is_dir() else []


def statuses(run_dir: Path) -> Counter[tuple[str, str]]:
    return Counter((line["status"], line["reason"]) for line in read_lines(run_dir))


def run_ids(stdout: str) -> tuple[list[str], list[str]]:
    """(the resumed run ids, the new run ids) an unattended run printed."""
    resumed = re.findall(rf"^resumed run_id: ({RUN_ID})$", stdout, re.MULTILINE)
    new = re.findall(rf"^run_id: ({RUN_ID})$", stdout, re.MULTILINE)
    return resumed, new


def assert_reports_complete(run_dir: Path, lines: int) -> dict[str, Any]:
    """The run finished and its reports reconcile: ``lines`` outcome lines, counts that add up."""
    outcomes = read_lines(run_dir)
    assert len(outcomes) == lines
    summary = read_summary(run_dir)
    by_status = Counter(line["status"] for line in outcomes)
    assert {k: v for k, v in summary["counts"]["by_status"].items() if v} == dict(by_status)
    assert summary["counts"]["lines"] == lines
    with Journal.open(run_dir / "journal.sqlite") as journal:
        assert journal.get_meta("state") == "finished"
        assert journal.in_flight_batches() == []
    return summary


# --- the inbox -------------------------------------------------------------------------------


def test_the_inbox_flow(simulator: StartSim, tmp_path: Path) -> None:
    sim = simulator(token=TOKEN)
    config = nightly_config(tmp_path, sim)
    inbox, reports = tmp_path / "inbox", tmp_path / "reports"
    first = write_csv(inbox / "clientes.csv", phones(25))
    (inbox / "roto.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    age(inbox / "roto.xlsx")
    write_csv(inbox / "escribiendo.csv", phones(5, FIRST + 100), aged=False)
    (inbox / "~$clientes.xlsx").write_bytes(b"lock file of an open workbook")

    night = invoke(["run", "--config", str(config)])
    assert night.exit_code == ExitCode.SOME_FAILED, night.output
    [run_id] = run_ids(night.stdout)[1]
    assert sorted(sim.received()) == phones(25)
    # the imported file is archived with the run id in its name
    assert not first.exists()
    assert sorted(p.name for p in (inbox / "archive").iterdir()) == [f"clientes.{run_id}.csv"]
    # the unreadable one is in failed/ with why, and the run said so
    failed = sorted(p.name for p in (inbox / "failed").iterdir())
    assert len(failed) == 2 and failed[0].startswith("roto.") and failed[0].endswith(".xlsx")
    assert failed[1] == failed[0] + ".error.txt"
    why = (inbox / "failed" / failed[1]).read_text(encoding="utf-8")
    assert why.count("\n") == 1 and "roto.xlsx" in why
    assert f"unreadable, moved to {inbox / 'failed' / failed[0]}: {why.strip()}" in night.stderr
    # the file still being written waits for the next run; the lock file is never touched
    assert f"{inbox / 'escribiendo.csv'} is still being written: left for the next run" in (
        night.stderr
    )
    assert sorted(p.name for p in inbox.iterdir() if p.is_file()) == [
        "escribiendo.csv",
        "~$clientes.xlsx",
    ]
    assert_reports_complete(reports / run_id, 25)

    # the next night: the settled file is imported; a copy of an imported file is left alone
    age(inbox / "escribiendo.csv")
    copy = inbox / "copia.csv"
    copy.write_bytes((inbox / "archive" / f"clientes.{run_id}.csv").read_bytes())
    age(copy)
    night2 = invoke(["run", "--config", str(config)])
    assert night2.exit_code == 0, night2.output
    [run2] = run_ids(night2.stdout)[1]
    assert f"{copy} was imported by run {run_id}: left alone (--force imports it again)" in (
        night2.stderr
    )
    assert copy.exists()
    assert sorted(sim.received()) == phones(25) + phones(5, FIRST + 100)
    assert read_summary(reports / run2)["inputs"][0]["path"] == str(inbox / "escribiendo.csv")

    # --force imports the copy: read again, its numbers skipped as already blocked
    calls = sim.calls
    forced = invoke(["run", "--config", str(config), "--force"])
    assert forced.exit_code == 0, forced.output
    [run3] = run_ids(forced.stdout)[1]
    assert not copy.exists()
    assert (inbox / "archive" / f"copia.{run3}.csv").is_file()
    assert statuses(reports / run3) == {("skipped", "already-blocked"): 25}
    assert sim.calls == calls


def test_an_inbox_file_without_a_days_column_is_failed_and_the_rest_imported(
    simulator: StartSim, tmp_path: Path
) -> None:
    """One file the run cannot take (no days column) must not block the inbox every night."""
    sim = simulator(token=TOKEN)
    config = nightly_config(tmp_path, sim)
    inbox = tmp_path / "inbox"
    write_csv(inbox / "a.csv", phones(5))
    nodays = inbox / "sin_dias.csv"
    nodays.write_text("telefono\n3009999999\n", encoding="utf-8")
    age(nodays)

    night = invoke(["run", "--config", str(config)])
    assert night.exit_code == ExitCode.SOME_FAILED, night.output
    assert sorted(sim.received()) == phones(5)
    [failed, note] = sorted((inbox / "failed").iterdir())
    assert failed.name.startswith("sin_dias.") and note.name == failed.name + ".error.txt"
    assert note.read_text(encoding="utf-8") == (
        f'{nodays} has no days column and no --default-days was given: add a "days_block" '
        '(or "Días de bloqueo") column, name it with --days-column, or give --default-days N\n'
    )
    assert [p.name for p in inbox.iterdir() if p.is_file()] == []


def test_a_dry_run_leaves_the_inbox_as_it_is(simulator: StartSim, tmp_path: Path) -> None:
    sim = simulator(token=TOKEN)
    config = nightly_config(tmp_path, sim)
    source = write_csv(tmp_path / "inbox" / "a.csv", phones(5))
    broken = tmp_path / "inbox" / "roto.xlsx"
    broken.write_bytes(b"not a workbook")
    age(broken)
    dry = invoke(["run", "--config", str(config), "--dry-run"])
    assert dry.exit_code == ExitCode.SOME_FAILED, dry.output
    [run_id] = run_ids(dry.stdout)[1]
    assert statuses(tmp_path / "reports" / run_id) == {("ready", "valid"): 5}
    assert sorted(p.name for p in (tmp_path / "inbox").iterdir()) == ["a.csv", "roto.xlsx"]
    assert f"unreadable, left in place: {broken}: {broken} " in dry.stderr
    assert sim.calls == 0
    # so the real run still imports it
    night = invoke(["run", "--config", str(config)])
    assert night.exit_code == ExitCode.SOME_FAILED, night.output
    assert sorted(sim.received()) == phones(5)
    assert not source.exists() and not broken.exists()


# --- the ledger ------------------------------------------------------------------------------


def plain_run(sim: Simulator, source: Path, tmp_path: Path, *extra: str) -> tuple[Result, Path]:
    reports = tmp_path / "reports"
    before = set(run_dirs(reports))
    result = invoke([
        "run", str(source), "--base-url", sim.base_url, "--reports-dir", str(reports),
        "--batch-size", "5", "--max-wait", "0.05", "-q", *extra,
    ])  # fmt: skip
    [run_dir] = [path for path in run_dirs(reports) if path not in before]
    return result, run_dir


def test_the_ledger_sends_only_new_numbers_on_the_next_night(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN)
    old, new = phones(20), phones(10, FIRST + 500)
    night1, run1 = plain_run(sim, write_csv(tmp_path / "n1.csv", old, days=30), tmp_path)
    assert night1.exit_code == 0, night1.output
    assert sim.received() == old
    assert statuses(run1) == {("added", "added"): 20}

    # night 2: a cumulative export; the old numbers are still blocked long enough
    night2, run2 = plain_run(sim, write_csv(tmp_path / "n2.csv", old + new, days=30), tmp_path)
    assert night2.exit_code == 0, night2.output
    assert sim.received() == old + new
    _, lock_key = build_url(None, sim.base_url)
    until = date.fromordinal(datetime.now(UTC).date().toordinal() + 30).isoformat()
    today = datetime.now(UTC).date().isoformat()
    skipped = [line for line in read_lines(run2) if line["status"] == "skipped"]
    assert [line["telephone"] for line in skipped] == old
    assert {(line["reason"], line["message"]) for line in skipped} == {
        (
            "already-blocked",
            (
                f"already blocked on {lock_key} until {until} (confirmed {today} for 30 days); "
                "--no-skip sends it again"
            ),
        )
    }
    summary = read_summary(run2)
    assert summary["counts"]["by_status"]["skipped"] == 20
    assert summary["sending"]["calls"] == 2
    assert "skipped" not in {row["status"] for row in read_lines(run2, "errors.csv")}

    # a longer block than the ledger knows is sent again
    _, run3 = plain_run(sim, write_csv(tmp_path / "n3.csv", old[:5], days=90), tmp_path)
    assert statuses(run3) == {("added", "added"): 5}
    # --no-skip sends everything
    night4, run4 = plain_run(
        sim, write_csv(tmp_path / "n4.csv", old, days=30), tmp_path, "--no-skip"
    )
    assert night4.exit_code == 0
    assert statuses(run4) == {("added", "added"): 20}
    assert sim.received() == old + new + old[:5] + old


def test_numbers_of_an_uncertain_batch_are_not_taken_as_confirmed(
    simulator: StartSim, tmp_path: Path
) -> None:
    numbers = phones(15)
    sim = simulator(token=TOKEN, reject_patterns=(f"^{numbers[7]}$",))
    source = write_csv(tmp_path / "n.csv", numbers)
    night1, run1 = plain_run(sim, source, tmp_path)
    assert night1.exit_code == ExitCode.SOME_FAILED
    assert statuses(run1) == {("added", "added"): 10, ("uncertain", "partial-batch"): 5}
    with Ledger.open(tmp_path / "state" / "ledger.sqlite") as ledger:
        _, lock_key = build_url(None, sim.base_url)
        assert sorted(ledger.blocks(lock_key, numbers)) == numbers[:5] + numbers[10:]

    calls = sim.calls
    night2, run2 = plain_run(sim, source, tmp_path)
    assert sim.calls == calls + 1  # only the uncertain batch goes again
    lines = read_lines(run2)
    assert [line["telephone"] for line in lines if line["status"] != "skipped"] == numbers[5:10]
    assert night2.exit_code == ExitCode.SOME_FAILED  # the server still rejects one of them


def test_a_resumed_run_skips_what_another_run_confirmed_meanwhile(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(token=TOKEN, daily_quota=1, db_path=tmp_path / "sim.db")).start()
    try:
        numbers = phones(20)
        stopped, run1 = plain_run(sim, write_csv(tmp_path / "a.csv", numbers), tmp_path)
        assert stopped.exit_code == ExitCode.STOPPED
        sim = restart(sim, daily_quota=100)
        other, _ = plain_run(sim, write_csv(tmp_path / "b.csv", numbers[5:]), tmp_path)
        assert other.exit_code == 0
        assert sim.received() == numbers[5:]

        calls = sim.calls
        done = invoke(["resume", run1.name, "--reports-dir", str(run1.parent), "-q"])
        assert done.exit_code == 0, done.output
        assert sim.calls == calls  # the rest was confirmed by the other run: no call spent
        assert statuses(run1) == {("added", "added"): 5, ("skipped", "already-blocked"): 15}
    finally:
        sim.stop()


# --- a nightly run finishes yesterday's run first --------------------------------------------


def test_a_run_cut_while_archiving_its_inbox_files_is_finished_next_night(
    simulator: StartSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a file is archived its numbers live only in the journal: that run must resume."""
    sim = simulator(token=TOKEN)
    config = nightly_config(tmp_path, sim)
    write_csv(tmp_path / "inbox" / "a.csv", phones(10))
    write_csv(tmp_path / "inbox" / "b.csv", phones(10, FIRST + 50))

    def cut(*args: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(Ledger, "record_imported", cut)
        night1 = invoke(["run", "--config", str(config)])
    assert night1.exit_code == ExitCode.STOPPED
    [run1] = [path.name for path in run_dirs(tmp_path / "reports")]
    assert night1.stderr.endswith(f"`dnc-import resume {run1}` finishes it\n")
    assert (tmp_path / "inbox" / "archive" / f"a.{run1}.csv").is_file()
    assert sim.calls == 0

    night2 = invoke(["run", "--config", str(config)])
    assert night2.exit_code == 0, night2.output
    assert run_ids(night2.stdout)[0] == [run1]
    assert sorted(sim.received()) == phones(10) + phones(10, FIRST + 50)
    assert_reports_complete(tmp_path / "reports" / run1, 20)


def restart(sim: Simulator, **config: Any) -> Simulator:
    """The same server (port and list) the next day: a fresh quota."""
    port = int(sim.base_url.rsplit(":", 1)[1])
    db = sim.db_path
    sim.stop()
    return Simulator(SimConfig(token=TOKEN, db_path=db, **config), port=port).start()


def test_a_nightly_run_first_finishes_the_run_the_quota_stopped(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(token=TOKEN, daily_quota=2, db_path=tmp_path / "sim.db")).start()
    try:
        first = phones(40)
        write_csv(tmp_path / "exports" / "lunes.csv", first)
        config = nightly_config(tmp_path, sim, inputs=["exports/*.csv"])
        reports = tmp_path / "reports"
        night1 = invoke(["run", "--config", str(config)])
        assert night1.exit_code == ExitCode.STOPPED, night1.output
        [run1] = run_ids(night1.stdout)[1]
        assert statuses(reports / run1) == {
            ("added", "added"): 20,
            ("not_sent", "quota-exhausted"): 20,
        }

        sim = restart(sim, daily_quota=100)
        second = phones(10, FIRST + 700)
        write_csv(tmp_path / "exports" / "martes.csv", second)
        night2 = invoke(["run", "--config", str(config), "--json"])
        assert night2.exit_code == 0, night2.output
        assert f"finishing the unfinished run {run1} first" in night2.stderr
        # the rest of monday first, then only tuesday's new numbers
        assert sim.received() == first[20:] + second
        [run2] = [path.name for path in run_dirs(reports) if path.name != run1]
        assert_reports_complete(reports / run1, 40)
        assert statuses(reports / run1) == {("added", "added"): 40}
        assert statuses(reports / run2) == {
            ("added", "added"): 10,
            ("skipped", "already-blocked"): 40,
        }
        # --json: stdout is one JSON document, the new run's summary.json
        assert json.loads(night2.stdout) == read_summary(reports / run2)

        night3 = invoke(["run", "--config", str(config)])
        assert night3.exit_code == 0
        assert run_ids(night3.stdout)[0] == []
        assert sim.received() == first[20:] + second  # nothing new, nothing sent
    finally:
        sim.stop()


def test_an_unfinished_run_whose_export_was_rewritten_is_still_finished(tmp_path: Path) -> None:
    """A nightly export overwritten in place must not block every later night."""
    sim = Simulator(SimConfig(token=TOKEN, daily_quota=1, db_path=tmp_path / "sim.db")).start()
    try:
        export = write_csv(tmp_path / "exports" / "clientes.csv", phones(20))
        config = nightly_config(tmp_path, sim, inputs=["exports/*.csv"])
        night1 = invoke(["run", "--config", str(config)])
        assert night1.exit_code == ExitCode.STOPPED, night1.output
        [run1] = run_ids(night1.stdout)[1]

        sim = restart(sim, daily_quota=100)
        write_csv(export, phones(25))  # tonight's cumulative export, same name
        night2 = invoke(["run", "--config", str(config)])
        assert night2.exit_code == 0, night2.output
        assert (
            f"{export} changed since run {run1} read it: sending what that run read, from its "
            "journal" in night2.stderr
        )
        assert sim.received() == phones(20)[10:] + phones(25)[20:]
        assert statuses(tmp_path / "reports" / run1) == {("added", "added"): 20}
    finally:
        sim.stop()


# --- the config file -------------------------------------------------------------------------


def test_a_flag_beats_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("telefono\n3002000000\n", encoding="utf-8")
    config = write_config(
        tmp_path / "c.toml", inputs=["a.csv"], default_days=30, reports_dir="reports"
    )
    dry = invoke(["run", "--config", str(config), "--dry-run", "--default-days", "60"])
    assert dry.exit_code == 0, dry.output
    [run_dir] = run_dirs(tmp_path / "reports")
    assert [line["days_block"] for line in read_lines(run_dir)] == ["60"]
    assert read_summary(run_dir)["settings"]["validate"]["default_days"] == 60


def test_the_file_beats_the_environment(
    simulator: StartSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = simulator(token=TOKEN)
    write_csv(tmp_path / "a.csv", phones(3))
    monkeypatch.setenv("WOLKVOX_SERVER", "0002")  # would send to wv0002.wolkvox.com
    monkeypatch.setenv("WOLKVOX_TOKEN", "not-the-token")
    monkeypatch.setenv("NIGHTLY_TOKEN", TOKEN)
    config = write_config(
        tmp_path / "c.toml",
        base_url=sim.base_url,
        token_env="NIGHTLY_TOKEN",
        inputs=["a.csv"],
        reports_dir="reports",
    )
    night = invoke(["run", "--config", str(config)])
    assert night.exit_code == 0, night.output
    assert sim.received() == phones(3)
    [run_dir] = run_dirs(tmp_path / "reports")
    assert read_summary(run_dir)["settings"]["send"]["url"] == sim.add_dnc_url

    checked = invoke(["check-config", str(config)])
    assert checked.exit_code == 0, checked.output
    assert f"sends to {sim.add_dnc_url}" in checked.stdout


def test_base_url_on_the_command_line_replaces_the_files_server(
    simulator: StartSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = simulator(token=TOKEN)
    write_csv(tmp_path / "a.csv", phones(3))
    config = write_config(tmp_path / "c.toml", server="0042", inputs=["a.csv"], reports_dir="r")
    checked = invoke(["check-config", str(config)])
    assert checked.exit_code == 0, checked.output
    assert "sends to https://wv0042.wolkvox.com/api/v2/campaign.php?api=add_dnc" in checked.stdout
    monkeypatch.setenv("WOLKVOX_SERVER", "0002")
    checked = invoke(["check-config", str(config)])
    assert "sends to https://wv0042.wolkvox.com/" in checked.stdout  # the file beats the env

    night = invoke(["run", "--config", str(config), "--base-url", sim.base_url])
    assert night.exit_code == 0, night.output
    assert sim.received() == phones(3)
    # without a config file too: --base-url beats WOLKVOX_SERVER
    plain = invoke(["run", str(tmp_path / "a.csv"), "--base-url", sim.base_url, "--no-skip",
                    "--reports-dir", str(tmp_path / "r")])  # fmt: skip
    assert plain.exit_code == 0, plain.output
    assert sim.received() == phones(3) * 2
    # and --token-file on the command line replaces the file's token_env
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    write_config(
        config, base_url=sim.base_url, token_env="UNSET_VAR", inputs=["a.csv"], reports_dir="r"
    )
    forced = invoke(["run", "--config", str(config), "--token-file", str(token_file), "--no-skip"])
    assert forced.exit_code == 0, forced.output
    assert sim.received() == phones(3) * 3


def test_a_bad_config_key_exits_2_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('batch_sise = 5\nbase_url = "http://127.0.0.1:9"\n', encoding="utf-8")
    for command in (["run", "--config", str(config)], ["check-config", str(config)]):
        result = invoke(command)
        assert result.exit_code == ExitCode.USAGE
        assert result.stderr.startswith(
            f"Error: {config}: unknown key 'batch_sise'; did you mean 'batch_size'? Known keys: "
        )
        assert result.stdout == ""


def test_check_config_ok_and_its_failures(
    simulator: StartSim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim = simulator(token=TOKEN)
    config = nightly_config(tmp_path, sim)
    ok = invoke(["check-config", str(config)])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout == (
        f"{config}: OK\n"
        f"  sends to {sim.add_dnc_url}, the token is there (not shown)\n"
        f"  inputs now: 0 file(s); inbox: {tmp_path / 'inbox'}\n"
        f"  reports in {tmp_path / 'reports'}; ledger {tmp_path / 'state' / 'ledger.sqlite'}\n"
    )
    assert TOKEN not in ok.output
    assert sim.calls == 0

    monkeypatch.delenv("WOLKVOX_TOKEN")
    no_token = invoke(["check-config", str(config)])
    assert no_token.exit_code == ExitCode.USAGE
    assert no_token.stderr == (
        "Error: no token: set WOLKVOX_TOKEN in the environment, or give --token-file PATH "
        "(a file holding only the token, mode 600)\n"
    )
    monkeypatch.setenv("WOLKVOX_TOKEN", TOKEN)

    (tmp_path / "inbox").rmdir()
    no_inbox = invoke(["check-config", str(config)])
    assert no_inbox.exit_code == ExitCode.USAGE
    assert no_inbox.stderr == (
        f"Error: {config}: inbox {tmp_path / 'inbox'} does not exist: create it, or fix 'inbox'\n"
    )
    written = config.read_text(encoding="utf-8") + 'token = "x"\n'
    config.write_text(written, encoding="utf-8")
    token_in_file = invoke(["check-config", str(config)])
    assert token_in_file.exit_code == ExitCode.USAGE
    assert "'token' is not allowed" in token_in_file.stderr
    assert sim.calls == 0


# --- retention, --json, run.log --------------------------------------------------------------


def test_keep_days_deletes_old_finished_runs_and_keeps_unfinished_ones(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN, daily_quota=1)
    reports = tmp_path / "reports"
    source = write_csv(tmp_path / "a.csv", phones(10))
    done, finished_dir = plain_run(sim, write_csv(tmp_path / "b.csv", phones(5)), tmp_path)
    assert done.exit_code == 0
    stopped, stopped_dir = plain_run(sim, source, tmp_path)
    assert stopped.exit_code == ExitCode.STOPPED
    old_finished = finished_dir.rename(reports / "20200101T000000Z-aaaaaa")
    old_stopped = stopped_dir.rename(reports / "20200102T000000Z-bbbbbb")
    stray = reports / "20200103T000000Z-cccccc"  # not made by a run: no journal
    stray.mkdir()

    night = invoke([
        "run", str(write_csv(tmp_path / "c.csv", phones(3, FIRST + 90))), "--dry-run",
        "--reports-dir", str(reports), "--keep-days", "30",
    ])  # fmt: skip
    assert night.exit_code == 0, night.output
    assert "deleted 1 run folder(s) older than --keep-days" in night.stderr
    [new_run] = run_ids(night.stdout)[1]
    assert sorted(p.name for p in run_dirs(reports)) == sorted(
        [old_stopped.name, stray.name, new_run]
    )
    assert not old_finished.exists()


def test_json_of_a_scheduled_run_is_summary_json(simulator: StartSim, tmp_path: Path) -> None:
    sim = simulator(token=TOKEN)
    config = nightly_config(tmp_path, sim)
    write_csv(tmp_path / "inbox" / "a.csv", phones(12))
    night = invoke(["run", "--config", str(config), "--json", "-q"])
    assert night.exit_code == 0, night.output
    [run_dir] = run_dirs(tmp_path / "reports")
    assert json.loads(night.stdout) == read_summary(run_dir)
    assert night.stderr == ""


def test_run_log_is_private_masks_numbers_and_never_holds_the_token(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN)
    config = nightly_config(tmp_path, sim, max_calls=2)
    numbers = phones(30)
    write_csv(tmp_path / "inbox" / "a.csv", [*numbers, "12345"])
    night1 = invoke(["run", "--config", str(config)])
    assert night1.exit_code == ExitCode.STOPPED, night1.output
    night2 = invoke(["run", "--config", str(config)])  # finishes it (resume appends to the log)
    assert night2.exit_code == 0, night2.output
    [run_dir] = run_dirs(tmp_path / "reports")
    log = run_dir / "run.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text(encoding="utf-8")
    assert "resuming run" in text and "300****000" in text
    assert TOKEN not in text
    assert not [phone for phone in numbers if phone in text]
    assert not re.search(r"\d{7,}", text.replace(run_dir.name, "")), "a whole number in run.log"


# --- done when: a nightly run over an inbox, killed, then the next nights ----------------------


KILLED_RUN_KEYS: dict[str, object] = {"read_timeout": 2, "lost_answer_wait": 0.05}
"""Config keys of a nightly run to be killed mid-request: the next one rests the token 2.05 s,
not the default 150 s (read timeout + lost-answer wait), which the tests' waits would not reach."""


def nightly_subprocess(config: Path) -> subprocess.Popen[bytes]:
    """A nightly run of ``config`` (made with ``KILLED_RUN_KEYS``), to be killed mid-request."""
    return subprocess.Popen(
        [sys.executable, "-m", "importer", "run", "--config", str(config)],
        cwd=config.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_done_when_a_killed_nightly_run_is_finished_by_the_next_night(tmp_path: Path) -> None:
    monday, tuesday, wednesday = phones(60), phones(20, FIRST + 300), phones(7, FIRST + 600)
    invalid = ["12345", "no tengo"]
    sim = Simulator(
        SimConfig(token=TOKEN, faults=Faults(latency=0.1), db_path=tmp_path / "sim.db")
    ).start()
    try:
        config = nightly_config(tmp_path, sim, **KILLED_RUN_KEYS)
        inbox, reports = tmp_path / "inbox", tmp_path / "reports"
        write_csv(inbox / "lunes.csv", [*monday, *invalid])

        # night 1, killed mid-send (batch 3 inside the server)
        process = nightly_subprocess(config)
        deadline = time.monotonic() + 30
        while not (sim.calls == 3 and sim.calls > len(sim.requests())):
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.002)
        process.kill()
        process.communicate(timeout=30)
        [run1] = [path.name for path in run_dirs(reports)]
        assert (inbox / "archive" / f"lunes.{run1}.csv").is_file()  # archived before sending
        while sim.calls > len(sim.requests()):  # the cut request still ends in the server
            time.sleep(0.01)
        assert sim.received() == monday[:30]
        sim = restart(sim)

        # night 2: tuesday's cumulative export, plus the end of monday
        write_csv(inbox / "martes.csv", [*monday[:30], *tuesday])
        night2 = invoke(["run", "--config", str(config)])
        assert night2.exit_code == 0, night2.output
        resumed, new = run_ids(night2.stdout)
        assert resumed == [run1] and len(new) == 1
        run2 = new[0]
        assert_reports_complete(reports / run1, 62)
        assert statuses(reports / run1) == {
            ("added", "added"): 60,
            ("invalid", "too-short"): 1,
            ("invalid", "not-a-number"): 1,
        }
        assert_reports_complete(reports / run2, 50)
        assert statuses(reports / run2) == {
            ("added", "added"): 20,
            ("skipped", "already-blocked"): 30,
        }
        # monday's batch 3 (in flight at the kill) went again; nothing else twice
        received = sim.received()
        assert received == monday[20:] + tuesday
        assert set(sim.dnc_list()) == set(monday + tuesday)

        # night 3: a cumulative export again; only wednesday's numbers are sent
        write_csv(inbox / "miercoles.csv", [*monday, *tuesday, *wednesday])
        night3 = invoke(["run", "--config", str(config)])
        assert night3.exit_code == 0, night3.output
        assert sim.received() == received + wednesday
        [run3] = run_ids(night3.stdout)[1]
        assert statuses(reports / run3) == {
            ("added", "added"): 7,
            ("skipped", "already-blocked"): 80,
        }
        assert sorted(p.name for p in (inbox / "archive").iterdir()) == sorted(
            [f"lunes.{run1}.csv", f"martes.{run2}.csv", f"miercoles.{run3}.csv"]
        )
        assert set(sim.dnc_list()) == set(monday + tuesday + wednesday)
    finally:
        sim.stop()


def test_a_run_still_sending_is_never_resumed_beside_itself(tmp_path: Path) -> None:
    """A nightly run started while yesterday's still sends, or a resume typed meanwhile."""
    numbers = phones(60)
    sim = Simulator(SimConfig(token=TOKEN, faults=Faults(latency=0.15))).start()
    try:
        config = nightly_config(tmp_path, sim, **KILLED_RUN_KEYS)
        write_csv(tmp_path / "inbox" / "a.csv", numbers)
        process = nightly_subprocess(config)
        deadline = time.monotonic() + 30
        while sim.calls < 2:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.005)
        [run_dir] = run_dirs(tmp_path / "reports")

        second = invoke(["run", "--config", str(config)])
        assert second.exit_code == 0, second.output
        assert f"run {run_dir.name} is still running in another process: left to it" in (
            second.stderr
        )
        assert second.stdout == ""
        typed = invoke(["resume", run_dir.name, "--reports-dir", str(run_dir.parent)])
        assert typed.exit_code == ExitCode.USAGE
        assert typed.stderr == (
            f"Error: run {run_dir.name} is still running in another process: let it finish "
            "(or stop it), then resume it\n"
        )

        stdout, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, stderr
        assert stdout.decode() == f"run_id: {run_dir.name}\n"
        assert sim.received() == numbers  # each once
        assert_reports_complete(run_dir, 60)
        # once it has ended, a resume says it had finished
        after = invoke(["resume", run_dir.name, "--reports-dir", str(run_dir.parent)])
        assert after.exit_code == 0, after.output
    finally:
        sim.stop()
