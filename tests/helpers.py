"""What the crash tests (test_resume.py, test_crash_points.py) share besides benchmarks.cli_runs:
a state folder and token of the test's own, the CLI in process, and the rule on numbers sent
again (at most the one batch a stop cut).
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from benchmarks.cli_runs import start_cli
from importer.cli import cli
from importer.client import build_url
from importer.config import Token
from importer.lock import token_lock
from importer.simulator import Simulator


def own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str) -> None:
    """Locks and ledger of this test's own, for in-process runs and subprocesses alike."""
    monkeypatch.setenv("DNC_IMPORT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WOLKVOX_TOKEN", token)
    monkeypatch.delenv("WOLKVOX_SERVER", raising=False)


def start_run(
    sim: Simulator, source: Path, reports: Path, *options: str
) -> subprocess.Popen[bytes]:
    """``python -m importer run SOURCE`` into ``reports`` against ``sim``, in a subprocess
    started in the source's folder; it waits up to 30 s for a token another run holds. A kill
    mid-request makes the next run rest the token (read timeout + lost-answer wait): 2.05 s."""
    args = [
        "run", str(source), "--base-url", sim.base_url, "--reports-dir", str(reports),
        "--lock-wait", "30", "--read-timeout", "2", "--lost-answer-wait", "0.05", *options,
    ]  # fmt: skip
    return start_cli(args, cwd=source.parent)


@contextmanager
def token_held(sim: Simulator, token: str) -> Iterator[None]:
    """The token's lock for ``sim``'s server, held as another run sending with it would."""
    _, key = build_url(None, sim.base_url)
    with token_lock(key, Token(token), wait=5.0):
        yield


def invoke(args: Sequence[str]) -> Result:
    """The CLI in this process (nothing kills it)."""
    return CliRunner().invoke(cli, list(args))


def resume(run_dir: Path, *extra: str) -> Result:
    return invoke(["resume", run_dir.name, "--reports-dir", str(run_dir.parent), *extra])


def received_twice(received: Sequence[str]) -> set[str]:
    """The numbers the server received more than once (never more than twice)."""
    counts = Counter(received)
    assert max(counts.values(), default=1) <= 2, counts.most_common(3)
    return {phone for phone, count in counts.items() if count > 1}


def assert_at_most_one_batch_again(
    received: Sequence[str], batches: Sequence[Sequence[str]]
) -> set[str]:
    """What was received twice is empty or exactly one of ``batches``."""
    again = received_twice(received)
    assert not again or any(again == set(batch) for batch in batches), sorted(again)[:5]
    return again
