"""The local Wolkvox simulator, over real HTTP on loopback."""

from __future__ import annotations

import itertools
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from importer.errors import UsageError
from importer.simulator import (
    MSG_MAINTENANCE,
    MSG_SIMULTANEOUS,
    Faults,
    SimConfig,
    Simulator,
    _plain_batch,
)

StartSim = Callable[..., Simulator]
TOKEN = "sim-token"
PARAMS_400 = {
    "code": 400,
    "error": "Bad Request",
    "msg": "SOME PARAMETERS ARE REQUIRED",
    "data": [],
}
NO_API_400 = {
    "code": 400,
    "error": "Bad Request",
    "msg": "THE API YOU WANT TO CONSULT DOES NOT EXIST",
    "data": [],
}


def rows(*telephones: str, days: str = "30") -> list[dict[str, str]]:
    return [{"telephone": t, "days_block": days} for t in telephones]


_CLIENT = threading.local()


def shared_client() -> httpx.Client:
    """A keep-alive client per thread: building one costs ~50 ms (its TLS context)."""
    if not hasattr(_CLIENT, "client"):
        _CLIENT.client = httpx.Client(timeout=10)
    client: httpx.Client = _CLIENT.client
    return client


def post(
    sim: Simulator, body: Any, token: str | None = TOKEN, raw: bytes | None = None
) -> httpx.Response:
    client = shared_client()
    headers = {"wolkvox-token": token} if token is not None else {}
    if raw is not None:
        headers["Content-Type"] = "application/json"
        return client.post(sim.add_dnc_url, headers=headers, content=raw)
    return client.post(sim.add_dnc_url, headers=headers, json=body)


def outcomes(sim: Simulator) -> list[str]:
    return [r.outcome for r in sim.requests()]


# -- success -------------------------------------------------------------------------------


def test_success_answers_totals_as_strings_and_stores_the_numbers(simulator: StartSim) -> None:
    sim = simulator()
    answer = post(sim, rows("3001234567", "93191234567") + rows("12345", days="15"))
    assert answer.status_code == 200
    assert answer.json() == {
        "code": 201,
        "error": None,
        "msg": "2 telephones were added",
        "data": [{"total_added": "2", "total_rejected": "1", "total_sent": "3"}],
    }
    assert sim.dnc_list() == {"3001234567": 30, "93191234567": 30}
    assert sim.received() == ["3001234567", "93191234567"]
    [record] = sim.requests()
    assert (record.call, record.token_ok, record.records, record.http_status, record.outcome) == (
        1,
        True,
        3,
        200,
        "added",
    )
    assert record.start <= record.end
    assert (sim.calls, sim.violations, sim.max_in_flight, sim.quota_used) == (1, 0, 1, 1)


def test_empty_totals_leave_the_count_in_msg_only(simulator: StartSim) -> None:
    sim = simulator(totals="empty")
    assert post(sim, rows("3001234567")).json() == {
        "code": 201,
        "error": None,
        "msg": "1 telephones were added",
        "data": [{"total_added": "", "total_rejected": "", "total_sent": ""}],
    }


def test_string_code_applies_to_success_and_errors(simulator: StartSim) -> None:
    sim = simulator(string_code=True)
    assert post(sim, rows("3001234567")).json()["code"] == "201"
    assert post(sim, rows("3001234567"), token=None).json()["code"] == "401"


def test_days_are_stored_per_record_and_a_repeat_updates_them(simulator: StartSim) -> None:
    sim = simulator()
    post(sim, rows("3001234567", days="15") + rows("3007654321", days="90"))
    answer = post(sim, rows("3001234567", days="60"))
    assert answer.json()["data"] == [{"total_added": "1", "total_rejected": "0", "total_sent": "1"}]
    assert sim.dnc_list() == {"3001234567": 60, "3007654321": 90}
    assert sim.received() == ["3001234567", "3007654321", "3001234567"]


def test_chunked_bodies_are_read(simulator: StartSim) -> None:
    sim = simulator()

    def pieces() -> Iterator[bytes]:
        yield b'[{"telephone": "3001234567",'
        yield b' "days_block": "7"}]'

    client = shared_client()
    answer = client.post(sim.add_dnc_url, headers={"wolkvox-token": TOKEN}, content=pieces())
    assert answer.json()["msg"] == "1 telephones were added"
    assert sim.dnc_list() == {"3001234567": 7}


# -- refusals ------------------------------------------------------------------------------


def test_missing_and_wrong_tokens_are_refused_without_spending_quota(simulator: StartSim) -> None:
    sim = simulator(token="right")
    missing = post(sim, rows("3001234567"), token=None)
    assert missing.status_code == 401
    assert missing.json() == {
        "code": 401,
        "error": "Unauthorized",
        "msg": "PLEASE ENTER THE WOLKVOX-TOKEN",
        "data": [],
    }
    wrong = post(sim, rows("3001234567"), token="wrong")
    assert wrong.status_code == 403
    assert wrong.json() == {
        "code": 403,
        "error": "Forbidden",
        "msg": "PLEASE VALIDATE TOKEN",
        "data": [],
    }
    assert sim.dnc_list() == {}
    assert sim.quota_used == 0
    assert outcomes(sim) == ["no-token", "bad-token"]
    assert [r.token_ok for r in sim.requests()] == [False, False]


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("POST", "/api/v2/campaign.php?api=add_dncx"),
        ("POST", "/api/v2/campaign.php"),
        ("POST", "/api/v2/other.php?api=add_dnc"),
        ("GET", "/api/v2/campaign.php?api=add_dnc"),
        ("DELETE", "/api/v2/configuration.php?api=remove_dnc"),
    ],
)
def test_unknown_apis_do_not_exist(simulator: StartSim, method: str, target: str) -> None:
    sim = simulator()
    post(sim, rows("3001234567"))
    client = shared_client()
    answer = client.request(
        method,
        sim.base_url + target,
        headers={"wolkvox-token": TOKEN},
        json={"telephones": ["All"]} if method == "DELETE" else rows("3007654321"),
    )
    assert answer.status_code == 400
    assert answer.json() == NO_API_400
    assert sim.dnc_list() == {"3001234567": 30}
    assert sim.calls == 1


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"",
        b"\xff\xfe[]",
        b"[]",
        b'{"telephone": "3001234567", "days_block": "5"}',
        b'["3001234567"]',
        b'[{"telephone": "3001234567"}]',
        b'[{"days_block": "5"}]',
        b'[{"telephone": 3001234567, "days_block": "5"}]',
        b'[{"telephone": "   ", "days_block": "5"}]',
        b'[{"telephone": "3001234567", "days_block": 5}]',
        b'[{"telephone": "3001234567", "days_block": "0"}]',
        b'[{"telephone": "3001234567", "days_block": "-1"}]',
        b'[{"telephone": "3001234567", "days_block": "1.5"}]',
        b'[{"telephone": "3001234567", "days_block": "abc"}]',
        b'[{"telephone": "3001234567", "days_block": "1000000000"}]',
        b'[{"telephone": "3001234567", "days_block": "5"}, {"telephone": null, "days_block": "5"}]',
    ],
)
def test_malformed_bodies_are_refused_whole(simulator: StartSim, raw: bytes) -> None:
    sim = simulator()
    answer = post(sim, None, raw=raw)
    assert answer.status_code == 400
    assert answer.json() == PARAMS_400
    assert sim.dnc_list() == {}
    assert outcomes(sim) == ["malformed"]
    assert sim.quota_used == 1


def test_malformed_patterns_refuse_the_whole_batch(simulator: StartSim) -> None:
    sim = simulator(malformed_patterns=("^555",))
    answer = post(sim, rows("3001234567", "5551234567"))
    assert (answer.status_code, answer.json()) == (400, PARAMS_400)
    assert post(sim, rows("3001234567")).status_code == 200
    assert sim.dnc_list() == {"3001234567": 30}


def test_over_max_records_is_413(simulator: StartSim) -> None:
    sim = simulator(max_records=3)
    answer = post(sim, rows("3000000001", "3000000002", "3000000003", "3000000004"))
    assert answer.status_code == 413
    assert answer.json() == {
        "code": 413,
        "error": "Request Entity Too Large",
        "msg": "TOO MANY RECORDS: THE LIMIT IS 3 PER REQUEST",
        "data": [],
    }
    assert sim.dnc_list() == {}
    assert post(sim, rows("3000000001", "3000000002", "3000000003")).status_code == 200
    assert [(r.records, r.outcome) for r in sim.requests()] == [(4, "too-many"), (3, "added")]


def test_the_daily_quota_counts_authenticated_calls(simulator: StartSim) -> None:
    sim = simulator(daily_quota=2)
    post(sim, rows("3000000000"), token="wrong")
    assert post(sim, rows("3000000001")).status_code == 200
    assert post(sim, rows("3000000002")).status_code == 200
    spent = post(sim, rows("3000000003"))
    assert spent.status_code == 403
    assert spent.json() == {
        "code": 403,
        "error": "Forbidden",
        "msg": "TOKEN LIMIT EXCEEDED",
        "data": [],
    }
    assert sim.dnc_list() == {"3000000001": 30, "3000000002": 30}
    assert outcomes(sim) == ["bad-token", "added", "added", "quota"]


def test_rejections_by_shape_pattern_and_existing(simulator: StartSim) -> None:
    sim = simulator(reject_existing=True, reject_patterns=("^999",))
    first = post(
        sim,
        rows(
            "3001234567",
            "+573001234567",
            "999123456",
            "123456",
            "1234567890123456",
            "300-123-4567",
            "٣٠٠١٢٣٤٥٦٧",
        ),
    )
    assert first.json()["data"] == [{"total_added": "2", "total_rejected": "5", "total_sent": "7"}]
    assert first.json()["msg"] == "2 telephones were added"
    second = post(sim, rows("3001234567", "3007654321", "3007654321"))
    assert second.json()["data"] == [{"total_added": "1", "total_rejected": "2", "total_sent": "3"}]
    assert sim.dnc_list() == {"3001234567": 30, "+573001234567": 30, "3007654321": 30}
    assert sim.received() == ["3001234567", "+573001234567", "3007654321"]


# -- concurrency ---------------------------------------------------------------------------


def _send_together(sim: Simulator, bodies: list[list[dict[str, str]]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(bodies))
    answers: list[httpx.Response] = []

    def send(body: list[dict[str, str]]) -> None:
        with httpx.Client(timeout=10) as client:
            barrier.wait()
            answers.append(
                client.post(sim.add_dnc_url, headers={"wolkvox-token": TOKEN}, json=body)
            )

    threads = [threading.Thread(target=send, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_a_second_request_in_flight_is_refused_and_counted(simulator: StartSim) -> None:
    sim = simulator(faults=Faults(latency=0.5))
    answers = _send_together(sim, [rows("3000000001"), rows("3000000002")])
    assert sorted(a.status_code for a in answers) == [200, 403]
    refused = next(a for a in answers if a.status_code == 403)
    assert refused.json()["msg"] == MSG_SIMULTANEOUS
    assert (sim.violations, sim.max_in_flight, sim.calls) == (1, 2, 2)
    assert len(sim.received()) == 1
    assert sorted(outcomes(sim)) == ["added", "simultaneous"]


def test_an_allowed_overlap_is_still_a_violation(simulator: StartSim) -> None:
    sim = simulator(max_simultaneous=2, faults=Faults(latency=0.3))
    answers = _send_together(sim, [rows("3000000001"), rows("3000000002")])
    assert [a.status_code for a in answers] == [200, 200]
    assert (sim.violations, sim.max_in_flight) == (1, 2)


def test_back_to_back_requests_on_new_connections_never_overlap(simulator: StartSim) -> None:
    sim = simulator()
    with httpx.Client(headers={"Connection": "close", "wolkvox-token": TOKEN}) as client:
        for i in range(30):
            assert client.post(sim.add_dnc_url, json=rows(f"30000000{i:02d}")).status_code == 200
    assert (sim.violations, sim.max_in_flight, sim.connections) == (0, 1, 30)
    records = sim.requests()
    assert all(a.end <= b.start for a, b in itertools.pairwise(records))


def test_one_client_keeps_its_connection_alive(simulator: StartSim) -> None:
    sim = simulator()
    client = shared_client()
    for i in range(5):
        client.post(sim.add_dnc_url, headers={"wolkvox-token": TOKEN}, json=rows(f"300000000{i}"))
    assert sim.connections == 1
    assert len(sim.dnc_list()) == 5


# -- faults --------------------------------------------------------------------------------


def test_5xx_adds_nothing_spends_no_quota_and_is_not_json(simulator: StartSim) -> None:
    sim = simulator(daily_quota=1, faults=Faults(error_5xx_rate=1.0))
    answers = [post(sim, rows("3001234567")) for _ in range(12)]
    assert {a.status_code for a in answers} == {500, 502, 503}
    pages = {a.status_code: f"{a.status_code} {a.reason_phrase}".encode() for a in answers}
    for answer in answers:
        phrase = pages[answer.status_code]
        page = b"<html><head><title>%s</title></head><body><h1>%s</h1></body></html>" % (
            phrase,
            phrase,
        )
        assert answer.content in (b"", page)
    assert {a.content == b"" for a in answers} == {True, False}
    for answer in answers:
        with pytest.raises(json.JSONDecodeError):
            json.loads(answer.content)
    assert (sim.dnc_list(), sim.quota_used) == ({}, 0)
    assert set(outcomes(sim)) == {"5xx"}


def test_429_carries_retry_after(simulator: StartSim) -> None:
    sim = simulator(faults=Faults(rate_429=1.0, retry_after=0.5))
    answer = post(sim, rows("3001234567"))
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "0.5"
    assert answer.json()["msg"] == "TOO MANY REQUESTS"
    assert sim.dnc_list() == {}
    default = simulator(faults=Faults(rate_429=1.0))
    assert post(default, rows("3001234567")).headers["Retry-After"] == "1"


def test_drop_closes_without_answer_and_adds_nothing(simulator: StartSim) -> None:
    sim = simulator(faults=Faults(drop_rate=1.0))
    with pytest.raises(httpx.RemoteProtocolError):
        post(sim, rows("3001234567"))
    assert sim.dnc_list() == {}
    [record] = sim.requests()
    assert (record.http_status, record.outcome, record.records) == (0, "drop", 0)


def test_drop_after_adds_then_closes_without_answer(simulator: StartSim) -> None:
    sim = simulator(faults=Faults(drop_after_rate=1.0))
    with pytest.raises(httpx.RemoteProtocolError):
        post(sim, rows("3001234567", "3007654321"))
    assert sim.received() == ["3001234567", "3007654321"]
    assert [(r.http_status, r.outcome, r.records) for r in sim.requests()] == [(0, "drop-after", 2)]


def test_garbage_adds_then_answers_200_not_json(simulator: StartSim) -> None:
    sim = simulator(faults=Faults(garbage_rate=1.0))
    answer = post(sim, rows("3001234567"))
    assert answer.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        answer.json()
    assert sim.dnc_list() == {"3001234567": 30}


def test_spurious_simultaneous_is_not_a_violation(simulator: StartSim) -> None:
    sim = simulator(faults=Faults(simultaneous_rate=1.0))
    answer = post(sim, rows("3001234567"))
    assert (answer.status_code, answer.json()["msg"]) == (403, MSG_SIMULTANEOUS)
    assert (sim.dnc_list(), sim.violations) == ({}, 0)
    assert outcomes(sim) == ["spurious-simultaneous"]


def test_latency_and_spikes_delay_the_answer(simulator: StartSim) -> None:
    for faults in (Faults(latency=0.3), Faults(spike_rate=1.0, spike_latency=0.3)):
        sim = simulator(faults=faults)
        began = time.monotonic()
        assert post(sim, rows("3001234567")).status_code == 200
        assert time.monotonic() - began >= 0.3


def test_the_maintenance_window_covers_calls_a_to_b(simulator: StartSim) -> None:
    sim = simulator(faults=Faults(maintenance_calls=(2, 4)))
    answers = [post(sim, rows(f"300000000{i}")) for i in range(1, 6)]
    assert [a.status_code for a in answers] == [200, 403, 403, 200, 200]
    assert answers[1].json() == {
        "code": 403,
        "error": "Forbidden",
        "msg": MSG_MAINTENANCE,
        "data": [],
    }
    assert sorted(sim.dnc_list()) == ["3000000001", "3000000004", "3000000005"]


def _fault_sequence(start_sim: StartSim, seed: int) -> list[str]:
    faults = Faults(
        error_5xx_rate=0.2,
        rate_429=0.2,
        drop_rate=0.1,
        drop_after_rate=0.1,
        garbage_rate=0.2,
        simultaneous_rate=0.1,
    )
    sim = start_sim(seed=seed, faults=faults)
    for i in range(25):
        try:
            post(sim, rows(f"30000000{i:02d}"))
        except httpx.TransportError:
            pass
    return outcomes(sim)


def test_the_same_seed_gives_the_same_faults(simulator: StartSim) -> None:
    first = _fault_sequence(simulator, seed=5)
    assert _fault_sequence(simulator, seed=5) == first
    assert _fault_sequence(simulator, seed=6) != first
    assert len(set(first)) >= 4


# -- get_dnc, storage, lifecycle -----------------------------------------------------------


def test_get_dnc_lists_what_was_added(simulator: StartSim) -> None:
    sim = simulator()
    post(sim, rows("3001234567", days="15") + rows("3007654321", days="365"))
    client = shared_client()
    listed = client.get(sim.get_dnc_url, headers={"wolkvox-token": TOKEN})
    inbound = client.get(
        sim.get_dnc_url.replace("type=all", "type=inbound"), headers={"wolkvox-token": TOKEN}
    )
    bad_type = client.get(
        sim.get_dnc_url.replace("type=all", "type=x"), headers={"wolkvox-token": TOKEN}
    )
    no_token = client.get(sim.get_dnc_url)
    today = date.today()
    assert listed.status_code == 200
    assert listed.json() == {
        "code": 200,
        "error": None,
        "msg": "2 records found",
        "data": [
            {
                "phone_number": "3001234567",
                "type": "outbound",
                "date_delete": (today + timedelta(days=15)).isoformat(),
            },
            {
                "phone_number": "3007654321",
                "type": "outbound",
                "date_delete": (today + timedelta(days=365)).isoformat(),
            },
        ],
    }
    assert inbound.json()["data"] == []
    assert (bad_type.status_code, bad_type.json()) == (400, PARAMS_400)
    assert (no_token.status_code, no_token.json()["msg"]) == (401, "PLEASE ENTER THE WOLKVOX-TOKEN")
    assert sim.calls == 1


def test_the_list_lives_in_sqlite_and_outlives_the_simulator(tmp_path: Path) -> None:
    db = tmp_path / "dnc.sqlite3"
    with Simulator(SimConfig(db_path=db)) as sim:
        post(sim, rows("3001234567", days="20"))
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT telephone, days_block FROM dnc").fetchall() == [
            ("3001234567", 20)
        ]
    assert sim.dnc_list() == {"3001234567": 20}
    with Simulator(SimConfig(db_path=db, reject_existing=True)) as again:
        assert post(again, rows("3001234567")).json()["msg"] == "0 telephones were added"


def test_a_temporary_list_is_removed_on_stop() -> None:
    sim = Simulator().start()
    post(sim, rows("3001234567"))
    assert sim.db_path.exists()
    sim.stop()
    sim.stop()
    assert not sim.db_path.exists()
    assert sim.dnc_list() == {"3001234567": 30}


def test_serve_forever_returns_on_stop_and_logs_without_the_token(sim_token: str) -> None:
    lines: list[str] = []
    sim = Simulator(SimConfig(token=sim_token), log=lines.append)
    server = threading.Thread(target=sim.serve_forever)
    server.start()
    assert post(sim, rows("3001234567"), token=sim_token).status_code == 200
    post(sim, rows("3001234567"), token=sim_token + "x")
    sim.stop()
    server.join(timeout=5)
    assert not server.is_alive()
    assert lines[0] == f"simulator listening on {sim.base_url}"
    assert lines[1].startswith("POST /api/v2/campaign.php?api=add_dnc -> 200 added records=1 ")
    assert lines[2].startswith("POST /api/v2/campaign.php?api=add_dnc -> 403 bad-token records=0 ")
    assert not any(sim_token in line for line in lines)
    assert sim_token not in repr(sim.config)


def test_a_busy_port_is_a_usage_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError) as caught:
            Simulator(port=port)
    assert str(caught.value) == (
        f"the simulator cannot listen on 127.0.0.1:{port} (Address already in use); "
        "choose another --port, or 0 for a free one"
    )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: Faults(error_5xx_rate=1.5),
            "error_5xx_rate must be a share between 0 and 1, got 1.5",
        ),
        (lambda: Faults(rate_429=-0.1), "rate_429 must be a share between 0 and 1, got -0.1"),
        (lambda: Faults(latency=-1.0), "latency must be 0 seconds or more, got -1.0"),
        (
            lambda: Faults(maintenance_calls=(0, 3)),
            "maintenance_calls must be two call numbers 1 <= a <= b, got (0, 3)",
        ),
        (lambda: SimConfig(max_records=0), "max_records must be 1 or more, got 0"),
        (lambda: SimConfig(totals="some"), 'totals must be "full" or "empty", got \'some\''),
        (
            lambda: SimConfig(reject_patterns=("(",)),
            (
                "pattern '(' is not a valid regular expression:"
                " missing ), unterminated subpattern at position 0"
            ),
        ),
    ],
)
def test_bad_settings_say_which_and_why(make: Callable[[], object], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        make()
    assert str(caught.value) == message


# -- the usual body, read without json.loads -------------------------------------------------

SPELLINGS = [
    # (a body the quick reading takes, the same numbers spelled so only json.loads reads them)
    (
        (
            b'[{"telephone":"3001234567","days_block":"30"},'
            b'{"telephone":"+573007654321","days_block":"7"}]'
        ),
        (
            b'[{"days_block":"30","telephone":"3001234567"},'
            b'{"telephone":"+573007654321","days_block":"\\u0037"}]'
        ),
    ),
    (  # as json.dumps writes it by default, and with more whitespace around the array
        (
            b' \n[ {"telephone": "3001234567", "days_block": "30"} ,'
            b'\t{"telephone": "12345", "days_block": "15"} ]\r\n'
        ),
        (
            b'[{"telephone": "3001234567", "days_block": "30", "x": 1},'
            b' {"telephone": "12345", "days_block": "15"}]'
        ),
    ),
    (  # one number twice in a batch: both counted, the last days kept
        (
            b'[{"telephone":"3001234567","days_block":"30"},'
            b'{"telephone":"3001234567","days_block":"90"}]'
        ),
        (
            b'[{"telephone":"3001234567","days_block":"30"},'
            b'{"telephone":"300123456\\u0037","days_block":"90"}]'
        ),
    ),
]


@pytest.mark.parametrize(("quick", "general"), SPELLINGS)
@pytest.mark.parametrize("reject_existing", [False, True])
def test_a_body_read_quickly_is_answered_as_json_loads_reads_it(
    simulator: StartSim, quick: bytes, general: bytes, reject_existing: bool
) -> None:
    assert _plain_batch(quick) is not None and _plain_batch(general) is None  # the premise
    first, second = (
        simulator(reject_existing=reject_existing),
        simulator(reject_existing=reject_existing),
    )
    answers = [post(sim, None, raw=body) for sim, body in ((first, quick), (second, general))]
    assert answers[0].status_code == answers[1].status_code == 200
    assert answers[0].json() == answers[1].json()
    assert first.dnc_list() == second.dnc_list()
    assert first.received() == second.received()
    assert [r.stored for r in first.requests()] == [r.stored for r in second.requests()]


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'[{"telephone":"3001234567","days_block":"030"}]',  # a leading zero
        b'[{"telephone":"3001234567","days_block":"0"}]',
        b'[{"telephone":"","days_block":"30"}]',
        b'[{"telephone":"3001234567","days_block":30}]',  # days as a number
        b'[{"telephone":3001234567,"days_block":"30"}]',
        b'[{"telephone":"3001234567","days_block":"30"},]',  # a trailing comma
        (
            b'[{"telephone":"3001234567","days_block":"30"}{"telephone":"3001234568",'
            b'"days_block":"30"}]'
        ),  # no comma between
        b'\xef\xbb\xbf[{"telephone":"3001234567","days_block":"1234567890"}]',  # ten digits
        b'[{"telephone":"3001234567","days_block":"30"}]\f',  # not JSON whitespace
    ],
)
def test_a_body_out_of_the_usual_form_is_judged_by_json_loads(
    simulator: StartSim, body: bytes
) -> None:
    sim = simulator()
    answer = post(sim, None, raw=body)
    assert (answer.status_code, answer.json()) == (400, PARAMS_400)
    assert sim.dnc_list() == {}


def test_a_quick_body_is_still_checked_for_size_and_malformed_patterns(
    simulator: StartSim,
) -> None:
    sim = simulator(max_records=2, malformed_patterns=("^999",))
    three = json.dumps(rows("3001234567", "3001234568", "3001234569")).encode()
    bad = json.dumps(rows("3001234567", "9991234567")).encode()
    assert post(sim, None, raw=three).status_code == 413
    assert (post(sim, None, raw=bad).status_code, outcomes(sim)) == (400, ["too-many", "malformed"])
    assert [r.records for r in sim.requests()] == [3, 2]
    assert sim.dnc_list() == {}


def test_additions_a_simulator_did_not_fold_are_in_the_list_at_the_next_start(
    tmp_path: Path,
) -> None:
    """Each request's additions are appended, and folded into the list when it is read, on
    stop, and at the next start: a simulator killed mid-way loses none."""
    db = tmp_path / "dnc.sqlite3"
    killed = Simulator(SimConfig(db_path=db)).start()
    try:
        post(killed, rows("3001234567", days="20") + rows("3007654321"))
        with sqlite3.connect(db) as conn:  # as a kill would leave it: nothing folded yet
            assert conn.execute("SELECT COUNT(*) FROM dnc").fetchone() == (0,)
            assert conn.execute("SELECT COUNT(*) FROM dnc_added").fetchone() == (1,)
        with Simulator(SimConfig(db_path=db, reject_existing=True)) as next_one:
            assert next_one.dnc_list() == {"3001234567": 20, "3007654321": 30}
            assert post(next_one, rows("3007654321")).json()["msg"] == "0 telephones were added"
    finally:
        killed.stop()
