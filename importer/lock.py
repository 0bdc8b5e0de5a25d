"""One token, one request, across processes: an OS file lock per server + token.

The lock file lives in one per-user folder that every run shares (never the reports folder),
named by a hash of server + token so that the token never appears in a file name. Beside it a
``.holder`` file says who holds it (pid, host, start time), so a waiting run can say who it is
waiting for.

A ``.rest`` file beside them says until when the token must rest: the holder notes, before each
request, the moment until which that request may still run on the server if the process died
now (its start + read timeout + lost-answer wait), and after each answer the rest it still owes
(0, or what is left of a lost answer's wait). The note is one small ``pwrite`` of a file kept
open, and it outlives the process however it ends (SIGKILL included): the next holder of the
lock (a ``resume``, another run, the next night's run) reads it first and waits it out before
its first request. The note carries its span (read timeout + wait), which caps the wait if the
wall clock has moved.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import filelock

from importer.config import Token, state_dir_path
from importer.errors import Interrupted, LockTimeout, UsageError

_HOLDER_SUFFIX = ".holder"
_REST_SUFFIX = ".rest"
_REST_WIDTH = 40
"""Bytes of a rest note: "UNTIL SPAN", epoch seconds and seconds, space-padded, one line."""
_HOLDER_READ_TRIES = 5
"""The holder writes its file just after taking the lock: re-read a few times if missing."""


def default_lock_dir() -> Path:
    """The per-user lock folder, created 0700.

    ``$DNC_IMPORT_STATE_DIR/locks``, else ``$XDG_STATE_HOME/dnc-import/locks``, else
    ``~/.local/state/dnc-import/locks``.
    """
    folder = state_dir_path() / "locks"
    _make_private_dir(folder)
    return folder


def _make_private_dir(folder: Path) -> None:
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
    except OSError as exc:
        raise UsageError(
            f"the lock folder {str(folder)!r} cannot be created or made private "
            f"({type(exc).__name__}: {exc.strerror}): set DNC_IMPORT_STATE_DIR to a folder "
            "of yours"
        ) from exc


def lock_path(lock_key: str, token: Token, lock_dir: Path | None = None) -> Path:
    """The lock file of this server + token: a hash, never the token itself."""
    digest = hashlib.sha256(f"{lock_key}\0{token.reveal()}".encode()).hexdigest()[:32]
    folder = default_lock_dir() if lock_dir is None else lock_dir
    return folder / f"{digest}.lock"


@contextmanager
def token_lock(
    lock_key: str,
    token: Token,
    *,
    wait: float,
    lock_dir: Path | None = None,
    on_wait: Callable[[str], None] | None = None,
    poll: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[TokenRest]:
    """Hold the server + token lock for the whole sending phase; yield its ``TokenRest``.

    If another run holds it, ``on_wait`` is told who, once, and the lock is polled for up to
    ``wait`` seconds; then ``LockTimeout`` is raised (nothing was sent). Once it is held, a
    rest an earlier holder left owing (it stopped while a request of its may still be running
    on the server) is told through ``on_wait`` and waited out; Ctrl-C meanwhile raises
    ``Interrupted`` (nothing was sent).
    """
    if lock_dir is not None:
        _make_private_dir(lock_dir)
    path = lock_path(lock_key, token, lock_dir)
    holder_file = path.with_name(path.stem + _HOLDER_SUFFIX)
    lock = filelock.FileLock(str(path), mode=0o600, thread_local=False)
    try:
        if not _acquire(lock, 0, poll):
            if on_wait is not None:
                on_wait(
                    f"another dnc-import run ({_holder(holder_file, poll)}) is sending with "
                    f"this token; waiting up to {wait:g} s (--lock-wait)"
                )
            if not _acquire(lock, wait, poll):
                raise LockTimeout(
                    f"another dnc-import run ({_holder(holder_file, poll)}) still held this "
                    f"token after {wait:g} s (--lock-wait); nothing was sent; run again when "
                    "it has finished, or raise --lock-wait"
                )
    except KeyboardInterrupt as exc:
        raise Interrupted(
            "interrupted while waiting for another run to release the token; nothing was sent"
        ) from exc
    try:
        previous = _holder(holder_file, 0.0, tries=1)
        _write_holder(holder_file)
        with TokenRest(path.with_name(path.stem + _REST_SUFFIX)) as rest:
            rest.wait_out(previous, on_wait, sleep)
            yield rest
    finally:
        # remove the holder note while still holding the lock, so the next holder's survives
        with suppress(OSError):
            holder_file.unlink()
        lock.release()


def _acquire(lock: filelock.FileLock, wait: float, poll: float) -> bool:
    try:
        lock.acquire(timeout=max(0.0, wait), poll_interval=poll)
    except filelock.Timeout:
        return False
    except OSError as exc:
        raise UsageError(
            f"the lock file {lock.lock_file!r} cannot be used ({type(exc).__name__}: "
            f"{exc.strerror}): set DNC_IMPORT_STATE_DIR to a folder of yours"
        ) from exc
    return True


def _write_holder(holder_file: Path) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    temporary = holder_file.with_name(f"{holder_file.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(info, stream)
    os.replace(temporary, holder_file)


def _holder(holder_file: Path, poll: float, tries: int = _HOLDER_READ_TRIES) -> str:
    """Who holds the lock, as "pid 1234 on host x, since 08:31:02 UTC"."""
    for attempt in range(tries):
        try:
            info = json.loads(holder_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            if attempt + 1 < tries:
                time.sleep(min(poll, 0.1))
            continue
        if isinstance(info, dict):
            return _describe(info)
    return "holder unknown"


def _describe(info: dict[str, object]) -> str:
    pid, host, started = info.get("pid"), info.get("host"), info.get("started")
    text = f"pid {pid} on host {host}"
    if isinstance(started, str):
        try:
            moment = datetime.fromisoformat(started).astimezone(UTC)
        except ValueError:
            return text
        today = datetime.now(UTC).date()
        shown = moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M:%S")
        text += f", since {shown} UTC"
    return text


class TokenRest:
    """The token's rest note (see the module docstring): ``note`` it, ``owed`` reads it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> Self:
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise UsageError(
                f"the token's rest file {str(self.path)!r} cannot be used "
                f"({type(exc).__name__}: {exc.strerror}): set DNC_IMPORT_STATE_DIR to a folder "
                "of yours"
            ) from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def owed(self, now: float | None = None) -> float:
        """Seconds the token must still rest (0 if none), capped at the note's span."""
        if self._fd is None:
            return 0.0
        try:
            fields = os.pread(self._fd, _REST_WIDTH, 0).split()
            until, span = float(fields[0]), float(fields[1])
        except (OSError, ValueError, IndexError):
            return 0.0  # no note (a new file), or none readable: nothing is known to be out
        left = until - (time.time() if now is None else now)
        if not (left > 0 and span > 0 and math.isfinite(left)):  # also NaN
            return 0.0
        return min(left, span)

    def note(self, until: float, span: float) -> None:
        """The token must not be used before ``until`` (epoch seconds; 0: no rest owed), a rest
        of at most ``span`` seconds. One ``pwrite``: cheap enough before every request."""
        if self._fd is None:
            return
        text = f"{until:.3f} {span:.3f}"
        if not (math.isfinite(until) and math.isfinite(span)) or len(text) >= _REST_WIDTH:
            return
        with suppress(OSError):  # a note that cannot be written only costs the next run's wait
            os.pwrite(self._fd, (text.ljust(_REST_WIDTH - 1) + "\n").encode("ascii"), 0)

    def wait_out(
        self,
        previous: str,
        on_wait: Callable[[str], None] | None,
        sleep: Callable[[float], None],
    ) -> None:
        """Wait out a rest an earlier holder left owing, then clear the note."""
        owed = self.owed()
        if owed <= 0:
            return
        if on_wait is not None:
            by = "" if previous == "holder unknown" else f" ({previous})"
            on_wait(
                f"waiting {owed:.1f} s before using the token: an earlier run{by} stopped "
                "while a request of its may still be running on the server (--lost-answer-wait)"
            )
        try:
            sleep(owed)
        except KeyboardInterrupt as exc:
            raise Interrupted(
                "interrupted while the token rested after an earlier run's request; nothing "
                "was sent"
            ) from exc
        self.note(0.0, 0.0)
