"""Issue 6's security checks that no other test file holds, each against the real thing.

Where the others are (so this file does not repeat them): the token in no output, report,
journal, ledger or lock file under every fault (test_send_integration, test_cli); in no
exception message (test_client); a token file readable by others refused (test_credentials);
the server code checked before the token is read, plain http only to loopback (test_cli,
test_client); redirects never followed, unit level (test_client); run.log owner-only, masked
numbers, no token (test_nightly); --keep-days deletes old finished runs and keeps unfinished
ones (test_nightly, test_retention); the run folder 0700 and its files 0600 on a dry run
(test_cli); formula-looking cells quoted, a fixed list (test_cli, test_reporter).

Here: the token never in the command line or the process name of a running send (and where it
is in the environment, only the owner can read that); a redirect over real HTTP is not followed
and the token never reaches its target; every file a real send makes (reports, journal, run
log, ledger, locks) owner-only under ``umask 000``; no cell of any report can run as a formula
whatever the input holds (hypothesis, CSV and XLSX); and the tool never sends the DNC call that
wipes the list: no code for it, the client can only add, and the server sees nothing else.
"""

from __future__ import annotations

import csv
import os
import re
import stat
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer import client as client_module
from importer.cli import cli
from importer.client import WolkvoxClient
from importer.simulator import ADD_DNC_PATH, Faults, SimConfig, Simulator

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "sec-token-Kp9-DISTINCT-77aa"
StartSim = Callable[..., Simulator]


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNC_IMPORT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("WOLKVOX_TOKEN", raising=False)
    monkeypatch.delenv("WOLKVOX_SERVER", raising=False)


def numbers_csv(path: Path, count: int = 300) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("telefono;dias\n")
        out.writelines(f"{3004000000 + i};30\n" for i in range(count))
    return path


def cli_process(
    args: list[str], env: dict[str, str], umask: int | None = None
) -> subprocess.Popen[bytes]:
    program = [sys.executable, "-m", "importer", *args]
    if umask is not None:  # through a shell: preexec_fn is unsafe with the simulator's threads
        program = ["sh", "-c", f'umask {umask:03o} && exec "$@"', "sh", *program]
    return subprocess.Popen(
        program,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finish(process: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    try:
        stdout, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    return process.returncode, stdout, stderr


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# --- the token and the process table ---------------------------------------------------------


def proc_texts(pid: int) -> dict[str, bytes]:
    """What `ps`, `top` and /proc show of a process: its command line, its name, its threads'."""
    texts = {
        "cmdline": Path(f"/proc/{pid}/cmdline").read_bytes(),
        "comm": Path(f"/proc/{pid}/comm").read_bytes(),
    }
    for task in Path(f"/proc/{pid}/task").iterdir():
        texts[f"task {task.name} comm"] = (task / "comm").read_bytes()
    return texts


@pytest.mark.parametrize("given_by", ["token-file", "environment"])
def test_the_token_is_never_in_the_command_line_or_process_name_of_a_send(
    simulator: StartSim, tmp_path: Path, given_by: str
) -> None:
    sim = simulator(token=TOKEN, faults=Faults(latency=0.1))
    source, reports = numbers_csv(tmp_path / "numeros.csv"), tmp_path / "reports"
    args = ["run", str(source), "--base-url", sim.base_url, "--reports-dir", str(reports)]
    args += ["--batch-size", "50"]
    env: dict[str, str] = {}
    if given_by == "token-file":
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN + "\n")
        token_file.chmod(0o600)
        args += ["--token-file", str(token_file)]
    else:
        env["WOLKVOX_TOKEN"] = TOKEN
    process = cli_process(args, env)
    wait_until(lambda: sim.calls >= 2 or process.poll() is not None)
    assert process.poll() is None, "the run ended before it could be looked at"
    seen = proc_texts(process.pid)
    environ = Path(f"/proc/{process.pid}/environ")
    in_environ = TOKEN.encode() in environ.read_bytes()
    environ_mode = stat.S_IMODE(environ.stat().st_mode)
    code, stdout, stderr = finish(process)

    assert code == 0, stderr
    assert b"importer" in seen["cmdline"]  # it is the right process
    assert [name for name, text in seen.items() if TOKEN.encode() in text] == []
    assert TOKEN.encode() not in stdout + stderr
    # WOLKVOX_TOKEN is in the environment because the user put it there; /proc shows a
    # process's environment to its owner (and root) only; a token file keeps it out of it
    assert in_environ is (given_by == "environment")
    assert environ_mode & 0o077 == 0


def test_no_command_that_sends_takes_the_token_as_an_option() -> None:
    """An option value shows in `ps` and in the shell's history: only a file or the environment
    carry the token. (``simulate --token`` is the local simulator's own made-up token.)"""
    assert isinstance(cli, click.Group)
    for name, command in cli.commands.items():
        options = {o for param in command.params for o in getattr(param, "opts", [])}
        tokenish = {o for o in options if "token" in o}
        expected = {"--token"} if name == "simulate" else {"--token-file"} & options
        assert tokenish == expected, (name, tokenish)
    done = CliRunner().invoke(cli, ["run", "a.csv", "--server", "0002", "--token", TOKEN])
    assert done.exit_code == 2
    assert "No such option '--token'" in done.output
    assert TOKEN not in done.output


# --- redirects over real HTTP -----------------------------------------------------------------


class Redirector(ThreadingHTTPServer):
    """Answers every request with a redirect to ``target``; remembers what it was sent."""

    def __init__(self, target: str, status: int) -> None:
        self.target, self.status = target, status
        self.seen: list[tuple[str, str, str | None]] = []
        super().__init__(("127.0.0.1", 0), _RedirectHandler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _RedirectHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        server = self.server
        assert isinstance(server, Redirector)
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        server.seen.append((self.command, self.path, self.headers.get("wolkvox-token")))
        self.send_response(server.status)
        self.send_header("Location", server.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def redirector() -> Iterator[Callable[[str, int], Redirector]]:
    started: list[Redirector] = []

    def start(target: str, status: int) -> Redirector:
        server = Redirector(target, status)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_the_token_never_reaches_its_target(
    tmp_path: Path,
    redirector: Callable[[str, int], Redirector],
    status: int,
) -> None:
    lines: list[str] = []
    with Simulator(SimConfig(token=TOKEN), log=lines.append) as target:
        middle = redirector(target.add_dnc_url, status)
        source, reports = numbers_csv(tmp_path / "numeros.csv", 20), tmp_path / "reports"
        done = CliRunner().invoke(
            cli,
            ["run", str(source), "--base-url", middle.base_url, "--reports-dir", str(reports)],
            env={"WOLKVOX_TOKEN": TOKEN},
        )
        assert done.exit_code == 2, done.output
        assert (target.calls, lines) == (0, [])  # the target never heard of it
    assert [(method, path) for method, path, _ in middle.seen] == [
        ("POST", "/api/v2/campaign.php?api=add_dnc")
    ]
    assert f"the server answered a redirect to {target.add_dnc_url} (HTTP {status})" in done.stderr
    assert "it was not followed (the token is never sent elsewhere)" in done.stderr
    assert TOKEN not in done.output


# --- owner-only files -------------------------------------------------------------------------


def modes_under(folder: Path) -> dict[str, int]:
    return {
        str(path.relative_to(folder)): stat.S_IMODE(path.lstat().st_mode)
        for path in sorted(folder.rglob("*"))
    }


def test_every_file_a_send_makes_is_owner_only_even_with_umask_000(
    simulator: StartSim, tmp_path: Path
) -> None:
    sim = simulator(token=TOKEN)
    source, reports = numbers_csv(tmp_path / "numeros.csv", 120), tmp_path / "reports"
    state = tmp_path / "state"
    args = ["run", str(source), "--base-url", sim.base_url, "--reports-dir", str(reports)]
    process = cli_process([*args, "--batch-size", "50", "--xlsx"], {"WOLKVOX_TOKEN": TOKEN}, 0)
    code, _, stderr = finish(process)
    assert code == 0, stderr
    [run_dir] = list(reports.iterdir())
    made = {f"reports/{k}": v for k, v in modes_under(run_dir).items()}
    made |= {f"state/{k}": v for k, v in modes_under(state).items()}
    made |= {
        "reports/": stat.S_IMODE(run_dir.stat().st_mode),
        "state/": 0o700 & state.stat().st_mode,
    }
    assert {"reports/journal.sqlite", "reports/run.log", "reports/outcomes.xlsx"} <= set(made)
    assert "state/ledger.sqlite" in made and any(name.endswith(".lock") for name in made)
    loose = {
        name: f"{mode:o}"
        for name, mode in made.items()
        if mode & 0o077 or (mode & 0o700) not in (0o600, 0o700)
    }
    assert loose == {}
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


# --- formulas ---------------------------------------------------------------------------------

_risky = st.text(alphabet="=+-@\t\r0123456789()\"'A1:,;. HYPERLINK", min_size=1, max_size=20)
_cell = st.one_of(_risky, st.sampled_from(["=1+1", "@SUM(A1)", "+57 300 123 4567", "-1", "\t=2"]))


def _risky_cell(value: str) -> bool:
    plain = re.fullmatch(r"[+-]?[0-9]+(?:[.,][0-9]+)?", value)
    return value[:1] in ("=", "+", "-", "@", "\t", "\r") and plain is None


@settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(rows=st.lists(st.tuples(_cell, _cell), min_size=1, max_size=12))
def test_no_cell_of_any_report_can_run_as_a_formula(rows: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "entrada.csv"
        with source.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, delimiter=";")
            writer.writerow(("telefono", "dias"))
            writer.writerows(rows)
        reports = Path(folder) / "reports"
        done = CliRunner().invoke(
            cli,
            ["run", str(source), "--dry-run", "--xlsx", "--reports-dir", str(reports), "-q",
             "--delimiter", ";", "--number-form", "e164"],
        )  # fmt: skip
        if done.exit_code == 2:  # every row blank after all: refused, no reports
            assert "has no data rows" in done.stderr, done.output
            return
        assert done.exit_code == 0, done.output
        [run_dir] = list(reports.iterdir())
        for name in ("outcomes.csv", "errors.csv"):
            with (run_dir / name).open(encoding="utf-8-sig", newline="") as stream:
                cells = [cell for row in csv.reader(stream) for cell in row]
            assert [cell for cell in cells if _risky_cell(cell)] == [], name
            if name == "outcomes.csv" and any(_risky_cell(c.strip()) for r in rows for c in r):
                assert any(cell.startswith("'") for cell in cells)  # they were there, quoted
        with zipfile.ZipFile(run_dir / "outcomes.xlsx") as book:
            sheets = [n for n in book.namelist() if n.startswith("xl/worksheets/")]
            for sheet in sheets:
                xml = book.read(sheet).decode("utf-8")
                assert "<f>" not in xml and "<f " not in xml, sheet
                kinds = set(re.findall(r'<c [^>]*?t="([^"]+)"', xml))
                assert kinds <= {"inlineStr"}, kinds
                assert len(re.findall(r"<c ", xml)) == len(re.findall(r'<c [^>]*t="', xml))


# --- the call that wipes the list -------------------------------------------------------------


def test_no_code_can_send_the_call_that_removes_numbers() -> None:
    """Wolkvox's ``remove_dnc`` (``DELETE .../configuration.php``; ``"All"`` wipes the list)."""
    for path in sorted((ROOT / "importer").glob("*.py")):
        text = path.read_text(encoding="utf-8").lower()
        assert "remove_dnc" not in text and "configuration.php" not in text, path.name
        if path.name != "simulator.py":  # the server side answers any method
            assert not re.search(r"\bdelete\s*\(|[\"']delete[\"']", text), path.name
    public = {name for name in vars(WolkvoxClient) if not name.startswith("_")}
    assert public == {"add_dnc", "check_max_calls"}  # the only call it makes, and a local check
    assert client_module.API_PATH == "/api/v2/campaign.php?api=add_dnc"


def test_a_run_with_every_fault_sends_nothing_but_add_dnc(tmp_path: Path) -> None:
    lines: list[str] = []
    faults = Faults(
        error_5xx_rate=0.2, rate_429=0.1, retry_after=0.01, drop_rate=0.1, drop_after_rate=0.1,
        garbage_rate=0.1, simultaneous_rate=0.1, maintenance_calls=(3, 5),
    )  # fmt: skip
    config = SimConfig(token=TOKEN, faults=faults, seed=5, malformed_patterns=("30040000[0-4]7",))
    with Simulator(config, log=lines.append) as sim:
        source, reports = numbers_csv(tmp_path / "numeros.csv", 200), tmp_path / "reports"
        done = CliRunner().invoke(
            cli,
            ["run", str(source), "--base-url", sim.base_url, "--reports-dir", str(reports),
             "--batch-size", "20", "--retries", "8", "--max-wait", "0.02",
             "--lost-answer-wait", "0.02", "-q"],
            env={"WOLKVOX_TOKEN": TOKEN},
        )  # fmt: skip
        assert done.exit_code in (0, 1), done.output
        outcomes = {record.outcome for record in sim.requests()}
    assert {"5xx", "429", "drop", "drop-after", "garbage", "maintenance", "malformed"} <= outcomes
    assert len(lines) == sim.calls > 10
    requests = {line.split(" -> ")[0] for line in lines}
    assert requests == {f"POST {ADD_DNC_PATH}?api=add_dnc"}
