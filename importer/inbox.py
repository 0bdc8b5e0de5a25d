"""The inbox: a folder where exports are dropped, imported once, then filed away.

``scan`` sorts the files directly in the folder into those ready to import, those still being
written (left for the next run), those whose content (sha256) the ledger says was already
imported, and those ignored (hidden and temporary files, folders, links). After its run the
caller files each one with ``archive`` (imported: ``archive/<stem>.<run_id><suffix>``) or
``fail`` (could not be read: ``failed/...`` with a ``.error.txt`` beside it saying why).

Nothing is ever overwritten: a name already taken gets ``.2``, ``.3``... before its suffix.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from importer.errors import InputError
from importer.ledger import Ledger

ARCHIVE = "archive"
FAILED = "failed"
ERROR_SUFFIX = ".error.txt"
TEMP_SUFFIXES = (".tmp", ".part", ".crdownload")
"""Files a program is still writing under a temporary name (any case)."""
TEMP_PREFIXES = ("~$",)
"""Excel and LibreOffice lock files (``~$clientes.xlsx``)."""

_READ_SIZE = 1 << 20


@dataclass(frozen=True)
class InboxScan:
    """What ``scan`` found in the inbox; every list sorted by file name."""

    ready: list[Path]
    """New files to import."""
    still_writing: list[Path]
    """Modified less than ``settle`` seconds ago, or changed while being hashed: next run."""
    already_imported: list[tuple[Path, str]]
    """(path, the run_id that imported the same content)."""
    ignored: list[Path]
    """Hidden files (``.*``), temporary files (``~$*``, ``*.tmp``, ``*.part``), folders, links."""
    digests: dict[Path, str] = field(default_factory=dict)
    """The sha256 of each ready and already-imported file, as hashed by the scan."""


def scan(
    inbox: Path,
    ledger: Ledger,
    *,
    force: bool = False,
    settle: float = 5.0,
    now: float | None = None,
) -> InboxScan:
    """Sort the files directly in ``inbox`` (never its ``archive/`` and ``failed/``).

    A file is still being written when its mtime is less than ``settle`` seconds before
    ``now`` (default: the clock), or when its size or mtime changed while it was hashed.
    ``force`` puts files already imported into ``ready`` too.

    >>> scan(Path("inbox"), ledger, settle=0).ready  # doctest: +SKIP
    [PosixPath('inbox/clientes.xlsx')]
    """
    entries = _entries(inbox)
    moment = time.time() if now is None else now
    ready: list[Path] = []
    still_writing: list[Path] = []
    already: list[tuple[Path, str]] = []
    ignored: list[Path] = []
    digests: dict[Path, str] = {}
    for entry in entries:
        path = Path(entry.path)
        if entry.name in (ARCHIVE, FAILED) and entry.is_dir(follow_symlinks=False):
            continue
        if _ignored(entry):
            ignored.append(path)
            continue
        digest = _settled_digest(path, moment, settle)
        if digest is None:
            still_writing.append(path)
            continue
        digests[path] = digest
        previous = None if force else ledger.was_imported(digest)
        if previous is None:
            ready.append(path)
        else:
            already.append((path, str(previous["run_id"])))
    return InboxScan(ready, still_writing, already, ignored, digests)


def archive(inbox: Path, path: Path, run_id: str) -> Path:
    """Move an imported file to ``inbox/archive/<stem>.<run_id><suffix>``; return where.

    >>> archive(Path("inbox"), Path("inbox/clientes.xlsx"), "20261128T083102Z-a1b2c3")
    ... # doctest: +SKIP
    PosixPath('inbox/archive/clientes.20261128T083102Z-a1b2c3.xlsx')
    """
    return _file_away(inbox / ARCHIVE, path, run_id)


def fail(inbox: Path, path: Path, run_id: str, reason: str) -> Path:
    """Move a file that could not be imported to ``inbox/failed/<stem>.<run_id><suffix>``.

    Beside it, ``<that name>.error.txt`` holds ``reason`` on one line. Returns the new path.
    """
    moved = _file_away(inbox / FAILED, path, run_id)
    note = moved.with_name(moved.name + ERROR_SUFFIX)
    line = " ".join(reason.split()) + "\n"
    try:
        descriptor = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(line)
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as exc:
        raise InputError(
            f"{moved} was moved to the failed folder, but {note.name} cannot be written "
            f"({exc.strerror}); the reason was: {line.strip()}"
        ) from exc
    return moved


def _entries(inbox: Path) -> list[os.DirEntry[str]]:
    if not inbox.is_dir():
        what = "is not a folder" if inbox.exists() else "does not exist"
        raise InputError(f"--inbox {inbox} {what}: create it, or check the path")
    try:
        with os.scandir(inbox) as found:
            return sorted(found, key=lambda entry: entry.name)
    except OSError as exc:
        raise InputError(
            f"--inbox {inbox} cannot be listed ({exc.strerror}): check its permissions"
        ) from exc


def _ignored(entry: os.DirEntry[str]) -> bool:
    name = entry.name
    lowered = name.lower()
    if name.startswith(".") or name.startswith(TEMP_PREFIXES) or lowered.endswith(TEMP_SUFFIXES):
        return True
    try:
        # only regular files: never follow a link, never open a FIFO (it would block)
        return not entry.is_file(follow_symlinks=False)
    except OSError:
        return True


def _settled_digest(path: Path, now: float, settle: float) -> str | None:
    """The file's sha256, or None if it is still being written."""
    try:
        before = path.stat()
        if now - before.st_mtime < settle:
            return None
        digest = hashlib.sha256()
        with path.open("rb") as stream:
            while block := stream.read(_READ_SIZE):
                digest.update(block)
        after = path.stat()
    except FileNotFoundError:
        return None  # renamed away by its writer while we looked: the next run will see it
    except OSError as exc:
        raise InputError(
            f"inbox file {path} cannot be read ({exc.strerror}): check its permissions"
        ) from exc
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        return None
    return digest.hexdigest()


def _file_away(folder: Path, path: Path, run_id: str) -> Path:
    if not run_id or os.sep in run_id or (os.altsep and os.altsep in run_id):
        raise ValueError(f"run id {run_id!r} cannot be part of a file name")
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        folder.chmod(0o700)
        target = _reserve(folder, path, run_id)
    except OSError as exc:
        raise InputError(
            f"cannot move {path} into {folder} ({exc.strerror}): check the inbox is writable"
        ) from exc
    try:
        _move(path, target)
    except OSError as exc:
        target.unlink(missing_ok=True)
        raise InputError(
            f"cannot move {path} to {target} ({exc.strerror}): check the inbox is writable"
        ) from exc
    return target


def _reserve(folder: Path, path: Path, run_id: str) -> Path:
    """Create an empty placeholder under a free name: the move replaces only our own file."""
    stem, suffix = path.stem, path.suffix
    names = [f"{stem}.{run_id}{suffix}"]
    names += [f"{stem}.{run_id}.{n}{suffix}" for n in range(2, 1000)]
    for name in names:
        target = folder / name
        if Path(f"{target}{ERROR_SUFFIX}").exists():
            continue  # keep a file and its .error.txt paired
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        return target
    raise FileExistsError(f"{folder} already holds {names[0]} and 998 more like it")


def _move(source: Path, target: Path) -> None:
    """``os.replace`` onto our placeholder; across file systems, copy + fsync + unlink."""
    try:
        os.replace(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        with source.open("rb") as reader, target.open("wb") as writer:
            shutil.copyfileobj(reader, writer, _READ_SIZE)
            writer.flush()
            os.fsync(writer.fileno())
        shutil.copystat(source, target)  # mtime and mode, as a rename keeps them
        source.unlink()
    _sync_folder(target.parent)
    _sync_folder(source.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename durable (best effort: some file systems cannot fsync a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
