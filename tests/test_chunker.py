"""The chunker: batch sizes, sequential numbering, splitting, verdicts, stops."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from importer.chunker import Batch, Chunker, batches, request_body, verdict
from importer.client import WolkvoxClient, build_url
from importer.config import SendOptions, Token
from importer.errors import AuthRefused, BatchFailed, QuotaExhausted, UsageError
from importer.http11 import make_http_client
from importer.model import BatchResult, Reason, SendItem, ServerTotals, Status
from importer.simulator import Simulator

SECRET = "chunker-test-token-5521"
URL = "https://wv0002.wolkvox.com/api/v2/campaign.php?api=add_dnc"


def numbers(count: int, start: int = 0) -> list[SendItem]:
    return [SendItem(i, f"3{i:09d}", 30 + i % 3) for i in range(start, start + count)]


class FakeWolkvox:
    """A MockTransport handler that behaves like add_dnc, with scripted refusals."""

    def __init__(
        self,
        *,
        malformed: frozenset[str] = frozenset(),
        rejected: frozenset[str] = frozenset(),
        limit: int = 10_000,
        status_override: dict[int, httpx.Response] | None = None,
    ) -> None:
        self.malformed = malformed
        self.rejected = rejected
        self.limit = limit
        self.override = status_override or {}
        self.batches: list[list[str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)
        phones = [record["telephone"] for record in records]
        self.batches.append(phones)
        call = len(self.batches)
        if call in self.override:
            return self.override[call]
        if len(phones) > self.limit:
            return httpx.Response(413, json={"code": 413, "msg": "TOO MANY RECORDS"})
        if any(phone in self.malformed for phone in phones):
            return httpx.Response(400, json={"code": 400, "msg": "SOME PARAMETERS ARE REQUIRED"})
        refused = sum(phone in self.rejected for phone in phones)
        added = len(phones) - refused
        return httpx.Response(
            200,
            json={
                "code": 201,
                "error": None,
                "msg": f"{added} telephones were added",
                "data": [
                    {
                        "total_added": str(added),
                        "total_rejected": str(refused),
                        "total_sent": str(len(phones)),
                    }
                ],
            },
        )


def opts(**changes: object) -> SendOptions:
    settings: dict[str, object] = {"url": URL, "token": Token(SECRET), "lock_key": "wv0002"}
    settings.update(changes)
    return SendOptions(**settings)  # type: ignore[arg-type]


def chunker(server: FakeWolkvox, **changes: object) -> tuple[Chunker, WolkvoxClient]:
    options = opts(**changes)
    http = httpx.Client(transport=httpx.MockTransport(server))
    client = WolkvoxClient(http, options, sleep=lambda _: None)
    return Chunker(client, options), client


def by_line(results: list[BatchResult]) -> dict[int, BatchResult]:
    seen: dict[int, BatchResult] = {}
    for result in results:
        for item in result.items:
            assert item.line_id not in seen, f"line {item.line_id} in two results"
            seen[item.line_id] = result
    return seen


# --- batches ---------------------------------------------------------------------------------


def test_batches_cut_in_order_and_stream() -> None:
    assert [[i.line_id for i in b] for b in batches(numbers(7), 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    endless = (SendItem(i, "3001234567", 1) for i in itertools.count())
    first_two = list(itertools.islice(batches(endless, 1000), 2))
    assert [len(b) for b in first_two] == [1000, 1000]
    assert list(batches([], 5)) == []


@pytest.mark.parametrize("size", [0, -1, 10_001])
def test_batches_refuse_sizes_outside_the_api_limit(size: int) -> None:
    with pytest.raises(UsageError) as caught:
        list(batches(numbers(3), size))
    assert str(caught.value) == f"--batch-size must be 1 to 10000 (the API's limit), not {size}"


# --- verdict ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("totals", "status", "reason", "message"),
    [
        (
            ServerTotals(added=1000, rejected=0, sent=1000),
            Status.ADDED,
            Reason.ADDED,
            "the server added all 1000 numbers of batch 7",
        ),
        (
            ServerTotals(added=1000),
            Status.ADDED,
            Reason.ADDED,
            "the server added all 1000 numbers of batch 7",
        ),
        (
            ServerTotals(added=998, rejected=2, sent=1000),
            Status.UNCERTAIN,
            Reason.PARTIAL_BATCH,
            (
                "the server added 998 of 1000 numbers of batch 7 and did not say which; check them "
                "with get_dnc"
            ),
        ),
        (
            ServerTotals(added=0, rejected=1000, sent=1000, msg="0 telephones were added"),
            Status.REJECTED,
            Reason.REJECTED_BY_SERVER,
            (
                "the server added none of the 1000 numbers of batch 7 (server said: '0 telephones were "
                "added'); they may already be on the list or match one of its rules: check them with "
                "get_dnc"
            ),
        ),
        (
            ServerTotals(rejected=1000),
            Status.REJECTED,
            Reason.REJECTED_BY_SERVER,
            (
                "the server added none of the 1000 numbers of batch 7; they may already be on the list "
                "or match one of its rules: check them with get_dnc"
            ),
        ),
        (
            ServerTotals(http_status=200, msg="ok"),
            Status.UNCERTAIN,
            Reason.NO_COUNTS,
            (
                "the server accepted batch 7 (1000 numbers) but gave no usable count of those added "
                "(server said: 'ok'); check them with get_dnc"
            ),
        ),
        (
            ServerTotals(rejected=0),
            Status.UNCERTAIN,
            Reason.NO_COUNTS,
            (
                "the server accepted batch 7 (1000 numbers) but gave no usable count of those added; "
                "check them with get_dnc"
            ),
        ),
        (
            ServerTotals(added=1000, rejected=0, sent=999),
            Status.UNCERTAIN,
            Reason.PARTIAL_BATCH,
            (
                "the server's counts for batch 7 do not add up: 1000 numbers sent, it counted 999, "
                "added 1000, rejected 0; check them with get_dnc"
            ),
        ),
        (
            ServerTotals(added=1200),
            Status.UNCERTAIN,
            Reason.PARTIAL_BATCH,
            (
                "the server's counts for batch 7 do not add up: 1000 numbers sent, it counted ?, added "
                "1200, rejected ?; check them with get_dnc"
            ),
        ),
    ],
)
def test_verdict(totals: ServerTotals, status: Status, reason: str, message: str) -> None:
    items = numbers(1000)
    result = verdict(items, totals, 7)
    assert (result.status, result.reason, result.message) == (status, reason, message)
    assert result.batch == 7 and result.items == items and result.totals is totals


# --- sending ---------------------------------------------------------------------------------


def test_sends_sequential_numbered_batches_one_at_a_time() -> None:
    server = FakeWolkvox()
    begun: list[tuple[int, int, int]] = []
    options = opts(batch_size=1000)
    client = WolkvoxClient(httpx.Client(transport=httpx.MockTransport(server)), options)
    sender = Chunker(
        client,
        options,
        first_batch=7,
        on_begin=lambda no, items: begun.append((no, len(items), len(server.batches))),
    )
    stream = sender.send(iter(numbers(2500)))
    first = next(stream)
    assert len(server.batches) == 1, "the next batch left before the caller took this result"
    rest = list(stream)
    results = [first, *rest]
    assert [len(b) for b in server.batches] == [1000, 1000, 500]
    assert [r.batch for r in results] == [7, 8, 9]
    assert begun == [(7, 1000, 0), (8, 1000, 1), (9, 500, 2)]
    assert all(r.status is Status.ADDED and r.attempts == 1 for r in results)
    assert [i.line_id for r in results for i in r.items] == list(range(2500))
    assert sender.batches_sent == 3 and client.calls == 3


def test_counts_become_verdicts() -> None:
    items = numbers(30)
    server = FakeWolkvox(rejected=frozenset(i.telephone for i in items[10:12] + items[20:30]))
    sender, _ = chunker(server, batch_size=10)
    results = list(sender.send(items))
    assert [(r.status, r.reason) for r in results] == [
        (Status.ADDED, Reason.ADDED),
        (Status.UNCERTAIN, Reason.PARTIAL_BATCH),
        (Status.REJECTED, Reason.REJECTED_BY_SERVER),
    ]
    assert results[1].message == (
        "the server added 8 of 10 numbers of batch 2 and did not say which; check them with get_dnc"
    )


def test_a_malformed_batch_is_split_until_the_bad_number_is_alone() -> None:
    items = numbers(1000)
    bad = items[637]
    server = FakeWolkvox(malformed=frozenset({bad.telephone}))
    sender, client = chunker(server, batch_size=1000, max_splits=10)
    results = list(sender.send(items))
    lines = by_line(results)
    assert sorted(lines) == list(range(1000))
    refused = [r for r in results if r.status is Status.REJECTED]
    assert len(refused) == 1 and refused[0].items == [bad]
    assert refused[0].reason == Reason.REFUSED_MALFORMED
    assert refused[0].message == (
        f"the server refused batch {refused[0].batch} (1 numbers) as malformed after 10 splits: "
        "SOME PARAMETERS ARE REQUIRED"
    )
    assert all(r.status is Status.ADDED for r in results if r is not refused[0])
    assert len(server.batches) == 21 == client.calls
    numbers_used = sorted(r.batch for r in results)
    assert len(set(numbers_used)) == len(numbers_used) and max(numbers_used) <= 21


def test_splitting_stops_at_max_splits() -> None:
    items = numbers(1000)
    server = FakeWolkvox(malformed=frozenset({items[5].telephone}))
    sender, _ = chunker(server, batch_size=1000, max_splits=6)
    results = list(sender.send(items))
    (refused,) = [r for r in results if r.status is Status.REJECTED]
    assert items[5] in refused.items and len(refused.items) == 16
    assert sum(len(r.items) for r in results) == 1000
    none_split, _ = chunker(FakeWolkvox(malformed=frozenset({items[5].telephone})), max_splits=0)
    (only,) = list(none_split.send(items[:10]))
    assert (only.status, only.batch, len(only.items)) == (Status.REJECTED, 1, 10)
    assert only.message == (
        "the server refused batch 1 (10 numbers) as malformed: SOME PARAMETERS ARE REQUIRED"
    )


def test_too_large_splits_and_lowers_the_batch_size() -> None:
    server = FakeWolkvox(limit=300)
    sender, _ = chunker(server, batch_size=1000)
    results = list(sender.send(numbers(2500)))
    assert [len(b) for b in server.batches] == [1000, 500, 250, 250, 500, 250, 250] + [250] * 6
    assert sender.batch_size == 250
    assert sorted(by_line(results)) == list(range(2500))
    assert all(r.status is Status.ADDED for r in results)


def test_too_large_even_when_split_fails_the_run() -> None:
    server = FakeWolkvox(limit=100)
    sender, _ = chunker(server, batch_size=1000, max_splits=1)
    stream = sender.send(numbers(1000))
    failed = next(stream)
    assert (failed.status, failed.reason, len(failed.items)) == (
        Status.FAILED,
        Reason.BATCH_FAILED,
        500,
    )
    assert failed.message == (
        "the server still refused batch 2 (500 numbers) as too large after 1 splits (the server "
        "refused 500 numbers as too large (HTTP 413 'TOO MANY RECORDS')); the run stopped "
        "there: lower --batch-size and resume the run"
    )
    with pytest.raises(BatchFailed) as caught:
        next(stream)
    assert str(caught.value) == failed.message
    assert len(server.batches) == 2


def test_a_failed_batch_is_reported_then_the_run_stops() -> None:
    server = FakeWolkvox(status_override={2: httpx.Response(503), 3: httpx.Response(503)})
    sender, client = chunker(server, batch_size=10, retries=1)
    stream = sender.send(numbers(30))
    assert next(stream).status is Status.ADDED
    failed = next(stream)
    assert (failed.batch, failed.status, failed.reason, failed.attempts) == (
        2,
        Status.FAILED,
        Reason.BATCH_FAILED,
        2,
    )
    assert failed.message == (
        f"10 numbers could not be sent to {URL} after 2 attempts (last: HTTP 503); the run "
        "stopped there: resume it later, or raise --retries/--max-wait"
    )
    with pytest.raises(BatchFailed):
        next(stream)
    assert len(server.batches) == 3 and client.calls == 3


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(403, json={"code": 403, "msg": "PLEASE VALIDATE TOKEN"}), AuthRefused),
        (httpx.Response(403, json={"code": 403, "msg": "TOKEN LIMIT EXCEEDED"}), QuotaExhausted),
    ],
)
def test_a_stopped_batch_yields_nothing(answer: httpx.Response, error: type[Exception]) -> None:
    server = FakeWolkvox(status_override={2: answer})
    sender, _ = chunker(server, batch_size=10)
    stream = sender.send(numbers(30))
    assert next(stream).batch == 1
    with pytest.raises(error):
        next(stream)
    assert len(server.batches) == 2


def test_max_calls_stops_between_split_halves() -> None:
    items = numbers(8)
    server = FakeWolkvox(malformed=frozenset({items[0].telephone}))
    sender, _ = chunker(server, batch_size=8, max_calls=2)
    with pytest.raises(QuotaExhausted):
        next(sender.send(items))
    assert [len(b) for b in server.batches] == [8, 4]


def test_max_calls_stops_before_a_batch_is_begun() -> None:
    """A batch --max-calls keeps from leaving is never recorded as in flight (resume would call
    it "in flight" and its numbers "may have been added")."""
    server = FakeWolkvox()
    options = opts(batch_size=10, max_calls=1)
    client = WolkvoxClient(
        httpx.Client(transport=httpx.MockTransport(server)), options, sleep=lambda _: None
    )
    begun: list[int] = []
    sender = Chunker(client, options, on_begin=lambda number, chunk: begun.append(number))
    stream = sender.send(numbers(30))
    assert next(stream).batch == 1
    with pytest.raises(QuotaExhausted):
        next(stream)
    assert begun == [1]
    assert len(server.batches) == 1


# --- over real HTTP --------------------------------------------------------------------------


def test_real_http_against_the_simulator(simulator: Callable[..., Simulator]) -> None:
    sim = simulator(token=SECRET)
    url, key = build_url(None, sim.base_url)
    assert url == sim.add_dnc_url
    options = SendOptions(url=url, token=Token(SECRET), lock_key=key, batch_size=1000)
    items = numbers(2500)
    with make_http_client(options) as http:
        sender = Chunker(WolkvoxClient(http, options), options)
        results: Iterator[BatchResult] = sender.send(iter(items))
        statuses = [(r.batch, len(r.items), r.status) for r in results]
    assert statuses == [(1, 1000, Status.ADDED), (2, 1000, Status.ADDED), (3, 500, Status.ADDED)]
    assert sim.dnc_list() == {i.telephone: i.days_block for i in items}
    assert sorted(sim.received()) == sorted(i.telephone for i in items)
    assert sim.violations == 0 and sim.calls == 3 and sim.connections == 1


@pytest.mark.parametrize(
    ("lost", "rejected", "status", "reason"),
    [
        (httpx.RemoteProtocolError("Server disconnected"), 10, Status.UNCERTAIN, "answer-lost"),
        (httpx.ReadTimeout("timed out"), 3, Status.UNCERTAIN, "answer-lost"),
        (httpx.ReadTimeout("timed out"), 0, Status.ADDED, Reason.ADDED),
        (httpx.ConnectError("refused"), 10, Status.REJECTED, Reason.REJECTED_BY_SERVER),
    ],
)
def test_a_batch_sent_again_after_a_lost_answer_is_never_rejected(
    lost: Exception, rejected: int, status: Status, reason: str
) -> None:
    """The lost try may have added the numbers: "none added" then may mean "already listed"."""
    items = numbers(10)
    server = FakeWolkvox(rejected=frozenset(i.telephone for i in items[:rejected]))
    tries: list[int] = []

    def first_answer_lost(request: httpx.Request) -> httpx.Response:
        tries.append(1)
        if len(tries) == 1:
            raise lost
        return server(request)

    options = opts(batch_size=10)
    client = WolkvoxClient(
        httpx.Client(transport=httpx.MockTransport(first_answer_lost)),
        options,
        sleep=lambda _: None,
    )
    (result,) = Chunker(client, options).send(items)
    assert (result.status, result.reason, result.attempts) == (status, reason, 2)
    if reason == "answer-lost":
        inner = verdict(items, result.totals, 1).message
        assert result.message == (
            "batch 1 was sent again after its answer was lost, and the first try may have "
            f"added its numbers; then {inner}"
        )


# --- from a queue, reading ahead (issue 5) ---------------------------------------------------


class Queue:
    """A RowQueue over numbers(...); records when each take happens; may fail on some takes."""

    def __init__(self, items: list[SendItem], fail_on: frozenset[int] = frozenset()) -> None:
        self.rows = [(i.line_id, i.telephone, i.days_block) for i in items]
        self.takes: list[int] = []
        self.fail_on = fail_on

    def take(self, size: int) -> list[tuple[int, str, int]]:
        self.takes.append(size)
        if len(self.takes) in self.fail_on:
            raise RuntimeError(f"take {len(self.takes)} broke")
        taken, self.rows = self.rows[:size], self.rows[size:]
        return taken


def test_a_queue_sends_what_send_sends_and_reads_each_batch_while_waiting() -> None:
    items = numbers(25)
    server, other = FakeWolkvox(), FakeWolkvox()
    sender, _ = chunker(server, batch_size=10)
    begun: list[tuple[int, list[int]]] = []
    options = opts(batch_size=10)
    client = WolkvoxClient(httpx.Client(transport=httpx.MockTransport(other)), options)
    queued = Chunker(
        client, options, on_begin=lambda n, chunk: begun.append((n, [i.line_id for i in chunk]))
    )
    queue = Queue(items)
    from_queue = list(queued.send_queue(queue))
    assert [(r.batch, r.items, r.status) for r in from_queue] == [
        (r.batch, r.items, r.status) for r in sender.send(items)
    ]
    assert other.batches == server.batches
    assert begun == [(1, list(range(10))), (2, list(range(10, 20))), (3, list(range(20, 25)))]
    # the first batch before any request, each next one during the previous request
    assert queue.takes == [10, 10, 10, 10]
    batch = from_queue[0].items
    assert isinstance(batch, Batch) and batch.line_ids == list(range(10))
    assert json.loads(batch.line_ranges_json) == [[0, 9]]
    assert request_body(batch) == batch.body == request_body(list(batch))


def test_a_batch_read_ahead_is_cut_when_the_size_was_lowered_meanwhile() -> None:
    items = numbers(2500)
    server = FakeWolkvox(limit=300)
    sender, _ = chunker(server, batch_size=1000)
    results = list(sender.send_queue(Queue(items)))
    # batch 1 is split while batch 2 (1000) was read ahead: sent as 250s, the rest carried
    assert [len(b) for b in server.batches] == [1000, 500, 250, 250, 500, 250, 250] + [250] * 6
    assert sorted(by_line(results)) == list(range(2500))
    sent = [phone for b in server.batches if len(b) <= 300 for phone in b]
    assert sent == [i.telephone for i in items]  # every number once, in order


def test_a_read_ahead_that_fails_is_taken_again_after_the_answer() -> None:
    items = numbers(30)
    server = FakeWolkvox()
    sender, _ = chunker(server, batch_size=10)
    queue = Queue(items, fail_on=frozenset({2}))  # the read-ahead during request 1
    results = list(sender.send_queue(queue))
    assert [len(r.items) for r in results] == [10, 10, 10]
    assert queue.takes == [10, 10, 10, 10, 10]


def test_a_queue_that_keeps_failing_stops_after_the_answer_is_handed_over() -> None:
    queue = Queue(numbers(30), fail_on=frozenset({2, 3}))
    sender, _ = chunker(FakeWolkvox(), batch_size=10)
    stream = sender.send_queue(queue)
    assert next(stream).status is Status.ADDED  # the answer of batch 1 is never lost
    with pytest.raises(RuntimeError, match="take 3 broke"):
        next(stream)


def test_work_while_waiting_that_fails_is_raised_after_the_answer() -> None:
    calls: list[int] = []

    def hook() -> None:
        calls.append(1)
        raise ValueError("could not log")

    sender, client = chunker(FakeWolkvox(), batch_size=10)
    stream = sender.send_queue(Queue(numbers(30)), hook)
    first = next(stream)
    assert first.status is Status.ADDED and calls == [1]
    with pytest.raises(ValueError, match="could not log"):
        next(stream)
    assert client.calls == 1
