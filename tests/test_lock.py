"""The token lock, across real processes."""

from __future__ import annotations

import json
import re
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from importer.config import Token
from importer.errors import Interrupted, LockTimeout
from importer.lock import default_lock_dir, lock_path, token_lock

SECRET = "lock-test-token-QQ81-distinctive"
KEY = "wv0002"

HOLDER_SCRIPT = """
import sys, time
from pathlib import Path
from importer.config import Token
from importer.lock import token_lock
lock_dir, key, secret, release = sys.argv[1:5]
with token_lock(key, Token(secret), wait=0, lock_dir=Path(lock_dir)):
    print("held", flush=True)
    while not Path(release).exists():
        time.sleep(0.02)
print("released", flush=True)
"""


@contextmanager
def holder(lock_dir: Path, secret: str = SECRET) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process that holds the lock until the yielded file is created."""
    release = lock_dir.parent / f"release-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(lock_dir), KEY, secret, str(release)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "held"
        yield process, release
    finally:
        release.touch()
        process.wait(timeout=10)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_lock_file_is_named_by_a_hash(tmp_path: Path) -> None:
    path = lock_path(KEY, Token(SECRET), tmp_path)
    assert path.parent == tmp_path
    assert re.fullmatch(r"[0-9a-f]{32}\.lock", path.name)
    assert SECRET not in str(path)
    assert path == lock_path(KEY, Token(SECRET), tmp_path)
    assert path != lock_path(KEY, Token(SECRET + "x"), tmp_path)
    assert path != lock_path("wv0003", Token(SECRET), tmp_path)


def test_default_lock_dir_is_per_user_and_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DNC_IMPORT_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", "relative/ignored")
    home_dir = default_lock_dir()
    assert home_dir == tmp_path / "home" / ".local" / "state" / "dnc-import" / "locks"
    assert mode(home_dir) == 0o700
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_lock_dir() == tmp_path / "xdg" / "dnc-import" / "locks"
    monkeypatch.setenv("DNC_IMPORT_STATE_DIR", str(tmp_path / "state"))
    state_dir = default_lock_dir()
    assert state_dir == tmp_path / "state" / "locks"
    assert mode(state_dir) == 0o700
    assert lock_path(KEY, Token(SECRET)).parent == state_dir


def test_holding_writes_who_holds_it_and_cleans_up(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    path = lock_path(KEY, Token(SECRET), lock_dir)
    holder_file = path.with_name(path.stem + ".holder")
    with token_lock(KEY, Token(SECRET), wait=0, lock_dir=lock_dir):
        info = json.loads(holder_file.read_text())
        assert info["pid"] > 0 and info["host"] == socket.gethostname()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", info["started"])
        assert (mode(lock_dir), mode(holder_file), mode(path)) == (0o700, 0o600, 0o600)
        for file in lock_dir.iterdir():
            assert SECRET not in file.name
            assert SECRET not in file.read_text()
    assert not holder_file.exists()
    with token_lock(KEY, Token(SECRET), wait=0, lock_dir=lock_dir):
        assert holder_file.exists()


def test_a_second_process_times_out_naming_the_holder(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    told: list[str] = []
    with holder(lock_dir) as (process, _):
        started = time.monotonic()
        with (
            pytest.raises(LockTimeout) as caught,
            token_lock(
                KEY, Token(SECRET), wait=0.4, lock_dir=lock_dir, on_wait=told.append, poll=0.05
            ),
        ):
            pytest.fail("got a lock another process holds")
        waited = time.monotonic() - started
    who = rf"pid {process.pid} on host {re.escape(socket.gethostname())}, since \d\d:\d\d:\d\d UTC"
    assert re.fullmatch(
        rf"another dnc-import run \({who}\) still held this token after 0\.4 s \(--lock-wait\); "
        r"nothing was sent; run again when it has finished, or raise --lock-wait",
        str(caught.value),
    ), str(caught.value)
    assert len(told) == 1
    assert re.fullmatch(
        rf"another dnc-import run \({who}\) is sending with this token; waiting up to 0\.4 s "
        r"\(--lock-wait\)",
        told[0],
    ), told[0]
    assert 0.4 <= waited < 3.0


def test_a_second_process_waits_then_gets_the_lock(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    told: list[str] = []
    with holder(lock_dir) as (process, release):

        def on_wait(message: str) -> None:
            told.append(message)
            release.touch()  # the holder finishes while we wait

        with token_lock(KEY, Token(SECRET), wait=10, lock_dir=lock_dir, on_wait=on_wait, poll=0.02):
            assert process.wait(timeout=10) == 0
            path = lock_path(KEY, Token(SECRET), lock_dir)
            info = json.loads(path.with_name(path.stem + ".holder").read_text())
            assert info["pid"] != process.pid
    assert len(told) == 1 and f"pid {process.pid}" in told[0]


def test_different_tokens_do_not_block_each_other(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    told: list[str] = []
    other = Token(SECRET + "-other")
    with holder(lock_dir):
        with token_lock(KEY, other, wait=0, lock_dir=lock_dir, on_wait=told.append):
            held_other = True
        # the same token is still held by the other process
        with pytest.raises(LockTimeout), token_lock(KEY, Token(SECRET), wait=0, lock_dir=lock_dir):
            pytest.fail("got a lock another process holds")
    assert held_other and told == []


def test_ctrl_c_while_waiting_is_interrupted_with_nothing_sent(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"

    def press_ctrl_c(message: str) -> None:
        raise KeyboardInterrupt

    with (
        holder(lock_dir),
        pytest.raises(Interrupted) as caught,
        token_lock(KEY, Token(SECRET), wait=10, lock_dir=lock_dir, on_wait=press_ctrl_c),
    ):
        pytest.fail("got a lock another process holds")
    assert str(caught.value) == (
        "interrupted while waiting for another run to release the token; nothing was sent"
    )


# --- the token's rest note --------------------------------------------------------------------

NOTE_SCRIPT = """
import os, sys, time
from pathlib import Path
from importer.config import Token
from importer.lock import token_lock
lock_dir, key, secret, rest = sys.argv[1:5]
with token_lock(key, Token(secret), wait=0, lock_dir=Path(lock_dir)) as note:
    note.note(time.time() + float(rest), float(rest))
    os.kill(os.getpid(), 9)  # a request was out: no finally, no clean release
"""


def test_a_rest_noted_by_a_killed_holder_is_waited_out_by_the_next(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    killed = subprocess.run(
        [sys.executable, "-c", NOTE_SCRIPT, str(lock_dir), KEY, SECRET, "1.0"], check=False
    )
    assert killed.returncode == -9
    told: list[str] = []
    slept: list[float] = []
    with token_lock(
        KEY, Token(SECRET), wait=0, lock_dir=lock_dir, on_wait=told.append, sleep=slept.append
    ) as rest:
        assert rest.owed() == 0.0  # cleared once waited out
    [waited] = slept
    assert 0.5 < waited <= 1.0
    [message] = told
    assert re.fullmatch(
        rf"waiting {waited:.1f} s before using the token: an earlier run \(pid \d+ on host "
        rf"{re.escape(socket.gethostname())}, since [0-9:]+ UTC\) stopped while a request of its "
        r"may still be running on the server \(--lost-answer-wait\)",
        message,
    ), message
    with token_lock(KEY, Token(SECRET), wait=0, lock_dir=lock_dir, sleep=slept.append):
        assert slept == [waited]  # nothing more owed


def test_a_rest_note_is_capped_by_its_span_and_ignored_once_past(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    with token_lock(KEY, Token(SECRET), wait=0, lock_dir=lock_dir) as rest:
        now = time.time()
        rest.note(now + 3600, 2.0)  # the wall clock moved back an hour since the note
        assert rest.owed(now) == 2.0
        rest.note(now - 1, 2.0)
        assert rest.owed(now) == 0.0
        rest.note(now + 1.5, 2.0)
        assert rest.owed(now) == pytest.approx(1.5, abs=0.01)  # noted to the millisecond
        rest.note(0.0, 0.0)  # an answer came: nothing owed
        assert rest.owed(now) == 0.0
    assert mode(rest.path) == 0o600 and SECRET not in rest.path.name


def test_ctrl_c_during_a_rest_is_interrupted_with_nothing_sent(tmp_path: Path) -> None:
    lock_dir = tmp_path / "locks"
    with token_lock(KEY, Token(SECRET), wait=0, lock_dir=lock_dir) as rest:
        rest.note(time.time() + 60, 60.0)

    def press_ctrl_c(seconds: float) -> None:
        raise KeyboardInterrupt

    with (
        pytest.raises(Interrupted) as caught,
        token_lock(KEY, Token(SECRET), wait=0, lock_dir=lock_dir, sleep=press_ctrl_c),
    ):
        pytest.fail("the rest was not waited out")
    assert str(caught.value) == (
        "interrupted while the token rested after an earlier run's request; nothing was sent"
    )
