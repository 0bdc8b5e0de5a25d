"""Cut the numbers into batches, send them one at a time, and judge each answer.

The chunker is a generator: a batch leaves only after the caller has consumed (and committed)
the previous ``BatchResult``. A batch the server refuses as malformed or too large is split in
halves, a bounded number of times, so that one bad number does not sink the others.

``send_queue`` is the fast way (issue 5): it reads each batch from the journal's queue and
builds what sending it needs (``Batch``: the items, their line ids, the encoded body) while the
previous request is in flight, so that between two requests there is only the answer to judge
and record.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import suppress
from itertools import islice
from typing import Protocol

from importer.client import WolkvoxClient, encode_body, encode_rows
from importer.config import SendOptions
from importer.errors import (
    BatchFailed,
    BatchRefused,
    BatchTooLarge,
    MalformedBatch,
    UsageError,
)
from importer.journal import line_ranges_json
from importer.model import BatchResult, Reason, SendItem, ServerTotals, Status

MAX_BATCH_SIZE = 10_000
"""The API's own limit of records per call."""
ANSWER_LOST = Reason.ANSWER_LOST
"""Reason of a batch sent again after a lost answer whose last answer is not "all added"
(belongs in ``model.Reason``)."""


class RowQueue(Protocol):
    """Where ``Chunker.send_queue`` takes its numbers from (``journal.SendQueue``)."""

    def take(self, size: int) -> list[tuple[int, str, int]]:
        """The next ``size`` numbers at most as ``(line_id, telephone, days_block)``; [] at the end."""
        ...


class Batch(list[SendItem]):
    """One batch of a queue: its items, and what sending and recording it needs, made once.

    A real list of SendItems (what ``BatchResult.items`` holds), plus its line ids (a list,
    and their runs as the journal stores them: ``Journal.begin_batch`` does nothing per line)
    and ``body`` (the add_dnc request, for the client and the ledger). A slice of it is a
    plain list (a split half is encoded anew).
    """

    __slots__ = ("body", "line_ids", "line_ranges_json", "rows")

    def __init__(self, rows: list[tuple[int, str, int]]) -> None:
        super().__init__(map(SendItem._make, rows))
        self.rows = rows
        self.line_ids = [row[0] for row in rows]
        self.line_ranges_json = line_ranges_json(self.line_ids)
        self.body = encode_rows(rows)


def request_body(items: Sequence[SendItem]) -> bytes:
    """The add_dnc body of ``items``: a Batch's own, else encoded now."""
    if isinstance(items, Batch):
        return items.body
    return encode_body([(item.telephone, item.days_block) for item in items])


def batches(items: Iterable[SendItem], size: int) -> Iterator[list[SendItem]]:
    """Consecutive lists of at most ``size`` items, streamed.

    >>> [len(b) for b in batches([SendItem(i, "3001234567", 1) for i in range(5)], 2)]
    [2, 2, 1]
    """
    if not 1 <= size <= MAX_BATCH_SIZE:
        raise UsageError(
            f"--batch-size must be 1 to {MAX_BATCH_SIZE} (the API's limit), not {size}"
        )
    source = iter(items)
    while chunk := list(islice(source, size)):
        yield chunk


def verdict(items: Sequence[SendItem], totals: ServerTotals, batch: int) -> BatchResult:
    """Judge one accepted batch from the server's counts (it never says which number)."""
    count = len(items)
    added, rejected, sent = totals.added, totals.rejected, totals.sent
    said = f" (server said: {totals.msg!r})" if totals.msg else ""

    kept = items if isinstance(items, list) else list(items)  # a Batch stays one

    def result(status: Status, reason: str, message: str) -> BatchResult:
        return BatchResult(batch, kept, status, reason, message, totals)

    if added == 0 or (added is None and rejected == count):
        return result(
            Status.REJECTED,
            Reason.REJECTED_BY_SERVER,
            f"the server added none of the {count} numbers of batch {batch}{said}; they may "
            "already be on the list or match one of its rules: check them with get_dnc",
        )
    if added is None:
        return result(
            Status.UNCERTAIN,
            Reason.NO_COUNTS,
            f"the server accepted batch {batch} ({count} numbers) but gave no usable count of "
            f"those added{said}; check them with get_dnc",
        )
    consistent = rejected in (None, 0) and sent in (None, count)
    if added == count and consistent:
        return result(
            Status.ADDED, Reason.ADDED, f"the server added all {count} numbers of batch {batch}"
        )
    if added < count and rejected in (None, count - added) and sent in (None, count):
        message = (
            f"the server added {added} of {count} numbers of batch {batch} and did not say "
            "which; check them with get_dnc"
        )
    else:
        message = (
            f"the server's counts for batch {batch} do not add up: {count} numbers sent, it "
            f"counted {_shown(sent)}, added {added}, rejected {_shown(rejected)}; check them "
            "with get_dnc"
        )
    return result(Status.UNCERTAIN, Reason.PARTIAL_BATCH, message)


def after_lost_answer(result: BatchResult, *, by_resume: bool = False) -> BatchResult:
    """The verdict on a batch sent again after an attempt whose answer was lost.

    That attempt may have added the numbers, so a later "none (or some) added" may only mean
    "already on the list": such a batch is ``uncertain``, never ``rejected``. ``by_resume``:
    the attempt was made by a run that stopped while it was out.
    """
    first = (
        f"batch {result.batch} holds numbers sent before the run stopped by a request whose "
        "answer was lost, and that request may have added them"
        if by_resume
        else f"batch {result.batch} was sent again after its answer was lost, and the first "
        "try may have added its numbers"
    )
    message = f"{first}; then {result.message}"
    return BatchResult(
        result.batch,
        result.items,
        Status.UNCERTAIN,
        ANSWER_LOST,
        message,
        result.totals,
        result.attempts,
    )


def _shown(value: int | None) -> str:
    return "?" if value is None else str(value)


class Chunker:
    """Sends batches sequentially and yields one ``BatchResult`` per answered batch.

    ``batches_sent`` counts the batches that got a final answer or failed (split parents
    included); ``batch_size`` is the size in use (lowered when the server finds it too large).
    """

    def __init__(
        self,
        client: WolkvoxClient,
        options: SendOptions,
        *,
        first_batch: int = 1,
        on_begin: Callable[[int, Sequence[SendItem]], None] | None = None,
        answer_lost: Collection[int] = (),
    ) -> None:
        if not 1 <= options.batch_size <= MAX_BATCH_SIZE:
            raise UsageError(
                f"--batch-size must be 1 to {MAX_BATCH_SIZE} (the API's limit), "
                f"not {options.batch_size}"
            )
        self._client = client
        self._options = options
        self._next_batch = first_batch
        self._on_begin = on_begin
        self._answer_lost = answer_lost
        """Line ids sent before by a request whose answer was lost (a run stopped mid-request):
        a batch holding any is judged as one sent again after a lost answer."""
        self.failed_after_lost_answer: list[int] = []
        """Line ids of a batch given up after an attempt whose answer was lost."""
        self._carry: list[tuple[int, str, int]] = []
        """Rows read ahead beyond a batch size lowered meanwhile (BatchTooLarge): sent next."""
        self.batch_size = options.batch_size
        self.batches_sent = 0

    def send(self, items: Iterable[SendItem]) -> Iterator[BatchResult]:
        """Send every item; raise the ``SendStopped`` that ends the run, after its last result.

        A batch stopped by auth, quota, a wrong endpoint or an interrupt yields nothing (its
        items are still ready); a batch that failed after its retries yields a FAILED result,
        then ``BatchFailed`` is raised on the next ``next()``.
        """
        source = iter(items)
        while chunk := list(islice(source, self.batch_size)):
            yield from self._send_batch(chunk, depth=0)

    def send_queue(
        self, queue: RowQueue, while_waiting: Callable[[], None] | None = None
    ) -> Iterator[BatchResult]:
        """``send`` for numbers taken from ``queue``, each batch read while the previous
        request is in flight (``WolkvoxClient.add_dnc(while_waiting=...)``).

        ``while_waiting`` (the caller's work that need not be done before the next request
        leaves: logging the last result) is called then too; an exception it raises is
        raised once the batch's result has been handed over, never while a request is in
        flight (its answer would be lost). So is a failed read ahead: the batch is then taken
        again with no request out, and the error, if it is still there, raised then. A number
        read ahead but never begun (the run stopped) is simply not sent: it is still ready in
        the journal.
        """
        ahead = self._take(queue)
        while ahead is not None:
            batch, ahead, read, failed = self._fit(ahead), None, False, None

            def meanwhile() -> None:
                nonlocal ahead, read, failed
                # the caller's light work first: the server is reading the request meanwhile
                if while_waiting is not None:
                    try:
                        while_waiting()
                    except Exception as exc:  # noqa: BLE001 - raised below, with no request out
                        failed = exc
                with suppress(Exception):  # taken again below, with no request out
                    ahead, read = self._take(queue), True

            yield from self._send_batch(batch, depth=0, while_waiting=meanwhile)
            if failed is not None:
                raise failed
            if not read:  # not while waiting (a transport that cannot), or that failed
                ahead = self._take(queue)

    def _take(self, queue: RowQueue) -> Batch | None:
        """The next batch: rows carried over first, then the queue's."""
        size = self.batch_size
        rows = self._carry[:size]
        if len(rows) < size:
            rows += queue.take(size - len(rows))
        self._carry = self._carry[size:]  # only once the queue gave its part
        return Batch(rows) if rows else None

    def _fit(self, batch: Batch) -> Batch:
        """``batch`` cut to the batch size, if that was lowered after it was read."""
        if len(batch) <= self.batch_size:
            return batch
        rows = batch.rows
        self._carry = rows[self.batch_size :] + self._carry
        return Batch(rows[: self.batch_size])

    def _send_batch(
        self,
        chunk: list[SendItem],
        depth: int,
        while_waiting: Callable[[], None] | None = None,
    ) -> Iterator[BatchResult]:
        client = self._client
        client.check_max_calls()  # before the journal records a batch that would never leave
        number = self._next_batch
        self._next_batch += 1
        if self._on_begin is not None:
            self._on_begin(number, chunk)
        try:
            totals = client.add_dnc(
                chunk,
                body=chunk.body if isinstance(chunk, Batch) else None,
                while_waiting=while_waiting,
            )
        except BatchFailed as exc:
            self.batches_sent += 1
            if client.last_answer_lost:
                self.failed_after_lost_answer = [item.line_id for item in chunk]
            yield self._result(number, chunk, Status.FAILED, Reason.BATCH_FAILED, str(exc))
            raise
        except BatchRefused as exc:
            self.batches_sent += 1
            yield from self._after_refusal(exc, number, chunk, depth)
            return
        self.batches_sent += 1
        result = verdict(chunk, totals, number)
        result.attempts = client.last_attempts
        if result.status is not Status.ADDED:
            if client.last_answer_lost:
                result = after_lost_answer(result)
            elif self._sent_before(chunk):
                result = after_lost_answer(result, by_resume=True)
        yield result

    def _sent_before(self, chunk: list[SendItem]) -> bool:
        lost = self._answer_lost
        return bool(lost) and any(item.line_id in lost for item in chunk)

    def _after_refusal(
        self, exc: BatchRefused, number: int, chunk: list[SendItem], depth: int
    ) -> Iterator[BatchResult]:
        if isinstance(exc, BatchTooLarge):
            # the server said len(chunk) is too many: later batches stay at half of it at most
            self.batch_size = max(1, min(self.batch_size, len(chunk) // 2))
        if len(chunk) > 1 and depth < self._options.max_splits:
            middle = (len(chunk) + 1) // 2
            yield from self._send_batch(chunk[:middle], depth + 1)
            yield from self._send_batch(chunk[middle:], depth + 1)
            return
        splits = f" after {depth} splits" if depth else ""
        if isinstance(exc, MalformedBatch):
            message = (
                f"the server refused batch {number} ({len(chunk)} numbers) as malformed"
                f"{splits}: {self._client.last_totals.msg or exc}"
            )
            yield self._result(number, chunk, Status.REJECTED, Reason.REFUSED_MALFORMED, message)
            return
        message = (
            f"the server still refused batch {number} ({len(chunk)} numbers) as too large"
            f"{splits} ({exc}); the run stopped there: lower --batch-size and resume the run"
        )
        yield self._result(number, chunk, Status.FAILED, Reason.BATCH_FAILED, message)
        raise BatchFailed(message) from exc

    def _result(
        self, number: int, chunk: list[SendItem], status: Status, reason: str, message: str
    ) -> BatchResult:
        client = self._client
        return BatchResult(
            number, chunk, status, reason, message, client.last_totals, client.last_attempts
        )
