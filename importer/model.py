"""The records that flow between the stages.

reader -> ``RawRow`` -> validator -> ``Outcome`` (status ready/invalid) -> journal
journal -> ``SendItem`` -> chunker -> ``BatchResult`` -> journal -> reporter
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

CellValue = str | int | float | bool | None
"""A raw cell as the reader hands it on: text from CSV, typed values from workbooks.

Dates and times from workbooks are handed on as their ISO text (they are never phones).
"""


class Status(str, Enum):
    """The whole status vocabulary of an outcome line."""

    READY = "ready"  # valid, would be sent (dry run, or not yet sent)
    ADDED = "added"  # the server confirmed its whole batch added
    REJECTED = "rejected"  # the server added none of its batch
    UNCERTAIN = "uncertain"  # the server added some of its batch, or gave no usable count
    INVALID = "invalid"  # not a sendable number or days value; never sent
    DUPLICATE = "duplicate"  # the same telephone kept on another line of the run
    FAILED = "failed"  # its batch failed after retries
    NOT_SENT = "not_sent"  # the run stopped before its batch left (resumable)
    SKIPPED = "skipped"  # already blocked long enough (ledger); not sent

    def __str__(self) -> str:
        return self.value


ATTENTION_STATUSES: frozenset[Status] = frozenset(
    {Status.INVALID, Status.REJECTED, Status.UNCERTAIN, Status.FAILED, Status.NOT_SENT}
)
"""The statuses that go to errors.csv: a person must look at them."""


class Reason:
    """Stable kebab-case reason codes. Add here, never rename (users filter on them)."""

    # ready / sent
    VALID = "valid"
    ADDED = "added"
    REJECTED_BY_SERVER = "rejected-by-server"
    PARTIAL_BATCH = "partial-batch"
    NO_COUNTS = "no-counts"
    REFUSED_MALFORMED = "refused-malformed"
    ANSWER_LOST = "answer-lost"
    BATCH_FAILED = "batch-failed"
    # phone problems
    MISSING_PHONE = "missing-phone"
    NOT_A_NUMBER = "not-a-number"
    LOST_DIGITS = "lost-digits-scientific-notation"
    NOT_WHOLE = "not-a-whole-number"
    TOO_SHORT = "too-short"
    TOO_LONG = "too-long"
    INVALID_NUMBER = "invalid-number"
    FOREIGN_NUMBER = "foreign-number"
    # days problems
    MISSING_DAYS = "missing-days"
    DAYS_ZERO = "days-zero"
    DAYS_NEGATIVE = "days-negative"
    DAYS_FRACTIONAL = "days-fractional"
    DAYS_NOT_A_NUMBER = "days-not-a-number"
    DAYS_TOO_LARGE = "days-too-large"
    # run-level
    DUPLICATE = "duplicate"
    ALREADY_BLOCKED = "already-blocked"


@dataclass(slots=True)
class RawRow:
    """One data row of one sheet of one input, as the reader found it.

    Not frozen: a frozen dataclass costs ~1.5 s per million rows to build.
    """

    source_file: str
    """The path as the user gave it (shown in every report)."""
    sheet: str
    """The sheet name for workbooks; "" for text files."""
    row: int
    """The 1-based row number a person sees in Excel or a text editor."""
    phone: CellValue
    days: CellValue
    """None when the sheet has no days column."""


@dataclass(slots=True)
class Outcome:
    """One outcome line: one number of one row (``part`` counts numbers in a split cell)."""

    source_file: str
    sheet: str
    row: int
    part: int
    raw_phone: str
    raw_days: str
    telephone: str
    """The exact string sent (or to be sent) as ``telephone``; "" when the phone is invalid.

    Set even when only the days are invalid, so a person can see which number it was.
    """
    days_block: int | None
    status: Status
    reason: str
    message: str
    batch: int | None = None


OUTCOME_COLUMNS: tuple[str, ...] = (
    "source_file",
    "sheet",
    "row",
    "part",
    "raw_phone",
    "raw_days",
    "telephone",
    "days_block",
    "status",
    "reason",
    "message",
    "batch",
)
"""The columns of outcomes.csv, in order."""


class SendItem(NamedTuple):
    """One number to send, with the journal line it belongs to.

    A named tuple: a batch of 1000 is built from the journal's rows in ~0.2 ms, where a frozen
    dataclass took ~1.1 ms, while the next request was in flight (issue 5).
    """

    line_id: int
    telephone: str
    days_block: int


@dataclass(slots=True)
class ServerTotals:
    """What the server said about one call. Any count may be unknown (None)."""

    added: int | None = None
    rejected: int | None = None
    sent: int | None = None
    http_status: int | None = None
    code: str | None = None
    msg: str = ""


@dataclass(slots=True)
class BatchResult:
    """The verdict on one batch, to be committed before the next batch leaves.

    ``status`` applies to every item of the batch (the server never says which number
    it rejected), with one ``reason`` and a human ``message``.
    """

    batch: int
    items: list[SendItem]
    status: Status
    reason: str
    message: str
    totals: ServerTotals = field(default_factory=ServerTotals)
    attempts: int = 1
    """HTTP requests this batch took (1 + retries)."""
