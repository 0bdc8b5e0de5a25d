"""What a bulk run leaves to a second process once its sending is over, while it writes its
reports: fold the ledger's queued confirmations into its blocks (``Ledger.open`` does), then,
once the run has read what its reports need (``go``), copy the verdicts onto the journal's lines
(``Journal.settle``).

    python -m importer.aftercare JOURNAL [LEDGER]     # settles once its stdin has a line or ends

For 200,000 numbers that is ~1.5 s and ~0.6 s of work that kept the run waiting before its
reports (issue 5); on the other core it costs the run little. Both are done anyway by the next
use of each file (the journal settles before any read of its lines, ``Ledger.open`` folds), and
each is one transaction: a process that dies half-way loses nothing, and its work is then done
later. The run reads what its reports need without the settle (``sent_lines``), before it: a
settle first would only make that read longer (every sent line would differ).
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

__all__ = ["Aftercare"]

log = logging.getLogger("importer")


class Aftercare:
    """The second process, started at once; ``wait`` for it before the run ends (a run that
    fails or is interrupted does not: the process finishes alone).

    >>> Aftercare(run_dir / "journal.sqlite", ledger_path).wait()  # doctest: +SKIP
    """

    def __init__(self, journal: Path, ledger: Path | None) -> None:
        command = [sys.executable, "-m", "importer.aftercare", str(journal)]
        if ledger is not None:
            command.append(str(ledger))
        self._process: subprocess.Popen[bytes] | None
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        except OSError as exc:
            log.warning("the journal is settled and the ledger folded later: %s", exc)
            self._process = None

    def go(self) -> None:
        """Let the process settle the journal (once the run has read its changed lines)."""
        stdin = None if self._process is None else self._process.stdin
        if stdin is not None and not stdin.closed:
            try:
                stdin.close()
            except OSError:
                pass  # it ended already: ``wait`` says how

    def wait(self) -> None:
        """Wait for the process to end (``go`` first); a failure is logged (its work is then
        done later)."""
        self.go()
        process, self._process = self._process, None
        if process is None:
            return
        err = b"" if process.stderr is None else process.stderr.read()
        process.wait()
        if process.returncode != 0:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            log.warning(
                "settling the journal or folding the ledger failed (exit %d: %s); it is done "
                "at their next use",
                process.returncode, last[0],
            )  # fmt: skip


def _main(argv: list[str]) -> None:
    from importer.journal import Journal
    from importer.ledger import Ledger

    if len(argv) > 1:
        Ledger.open(Path(argv[1])).close()  # open folds what is queued
    sys.stdin.buffer.read()  # until the run says go (or is gone)
    with Journal.open(Path(argv[0])) as journal:
        journal.settle()


if __name__ == "__main__":
    _main(sys.argv[1:])
