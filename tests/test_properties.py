"""Issue 6's property tests through the real pipeline (the CLI, ``--dry-run``, real files).

tests/test_validator.py holds them for the validator alone (every row gives well-formed
outcomes; a ready telephone fed back, without its dial prefix, is read as the same telephone).
Here the same promises hold end to end, from a CSV to outcomes.csv, errors.csv and summary.json:

- counts reconcile for any input: one or more lines per non-blank row (parts 1..k), none for a
  blank row, summary counts equal to the lines by status and by reason, errors.csv exactly the
  lines that need attention, in order;
- every output form (national, international, e164; with a dial prefix) read back from
  outcomes.csv is the same number, for phonenumbers and for the tool itself: importing the
  telephones of outcomes.csv again (without the prefix) gives the same telephones and days
  (the pipeline is idempotent on its own output).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import phonenumbers
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer.cli import cli

PREFIXES = [f"30{d}" for d in range(6)] + [f"31{d}" for d in range(10)] + ["320", "321", "350"]
ATTENTION = {"invalid", "rejected", "uncertain", "failed", "not_sent"}
SETTINGS = settings(
    max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "40")),
    deadline=None,
    derandomize=not os.environ.get("PROPERTY_RANDOM"),
    suppress_health_check=[HealthCheck.too_slow],
)
"""40 examples per property in the suite; PROPERTY_EXAMPLES=1000 (and PROPERTY_RANDOM=1 for a
fresh draw) for the long battery of docs/RELIABILITY.md."""

_mobiles = st.builds(
    lambda prefix, rest: prefix + f"{rest:07d}",
    st.sampled_from(PREFIXES),
    st.integers(0, 10**7 - 1),
)


def _written(phone: str, how: int) -> str:
    """A mobile as people write it."""
    forms = (
        phone,
        f"+57 {phone[:3]} {phone[3:6]} {phone[6:]}",
        f"({phone[:3]}) {phone[3:6]}-{phone[6:]}",
        f"{phone[:3]}-{phone[3:6]}-{phone[6:]}",
        f"57{phone}",
        f"+57{phone}",
    )
    return forms[how % len(forms)]


_valid_cells = st.builds(_written, _mobiles, st.integers(0, 5))
_junk = st.text(alphabet="0123456789 +-().,/#eE*xn", max_size=18)
_cells = st.one_of(
    st.just(""),
    _valid_cells,
    _junk,
    st.lists(st.one_of(_valid_cells, _junk), min_size=2, max_size=3).flatmap(
        lambda parts: st.sampled_from([" / ", "; ", ",", " | "]).map(lambda s: s.join(parts))
    ),
)
_days = st.one_of(
    st.just(""),
    st.integers(-5, 5000).map(str),
    st.sampled_from(["quince", "1.5", " 30 ", "0", "30.0", "1.000", "'45"]),
)


def write_csv(path: Path, rows: Sequence[tuple[str, str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(("telefono", "dias"))
        writer.writerows(rows)
    return path


def dry_run(source: Path, reports: Path, *options: str, empty: bool = False) -> Path:
    """The real CLI, in process; the run folder it made (``empty``: a file of blank rows only,
    refused as having no data rows)."""
    args = ["run", str(source), "--dry-run", "--reports-dir", str(reports), "-q"]
    done = CliRunner().invoke(cli, [*args, "--delimiter", ";", *options])
    if empty:
        assert (done.exit_code, done.stdout) == (2, ""), done.output
        assert done.stderr.startswith(f"Error: {source} has no data rows below the header (row 1)")
        return reports
    assert done.exit_code == 0, done.output
    run_id = done.stdout.removeprefix("run_id: ").strip()
    return reports / run_id


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as stream:
        return list(csv.DictReader(stream))


def read_summary(run_dir: Path) -> dict[str, Any]:
    summary: dict[str, Any] = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return summary


@SETTINGS
@given(
    rows=st.lists(st.tuples(_cells, _days), min_size=1, max_size=40),
    default_days=st.sampled_from([None, "30"]),
)
def test_counts_reconcile_for_any_input(
    rows: list[tuple[str, str]], default_days: str | None
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source = write_csv(Path(folder) / "numeros.csv", rows)
        options = () if default_days is None else ("--default-days", default_days)
        blank = {
            index + 2
            for index, (phone, days) in enumerate(rows)
            if not (phone.strip() or days.strip())
        }
        if len(blank) == len(rows):
            dry_run(source, Path(folder) / "reports", *options, empty=True)
            return
        run_dir = dry_run(source, Path(folder) / "reports", *options)
        lines = read_csv(run_dir / "outcomes.csv")
        errors = read_csv(run_dir / "errors.csv")
        summary = read_summary(run_dir)

    # one line per number, none for a blank row
    parts: dict[int, list[int]] = {}
    for line in lines:
        parts.setdefault(int(line["row"]), []).append(int(line["part"]))
    assert all(found == list(range(1, len(found) + 1)) for found in parts.values()), parts
    assert set(parts) == set(range(2, len(rows) + 2)) - blank
    [sheet] = summary["inputs"][0]["sheets"]
    assert (sheet["rows"], sheet["blank_rows"]) == (len(parts), len(blank))

    # the summary's counts are the lines' counts
    counts = summary["counts"]
    assert counts["lines"] == len(lines) == sum(counts["by_status"].values())
    assert counts["rows"] == len(parts)
    assert {k: v for k, v in counts["by_status"].items() if v} == Counter(
        line["status"] for line in lines
    )
    assert counts["by_reason"] == Counter(line["reason"] for line in lines)
    assert summary["exit_code"] == 0 and summary["dry_run"] is True

    # errors.csv: exactly the lines that need attention, in order
    attention = [line for line in lines if line["status"] in ATTENTION]
    assert [(e["row"], e["part"], e["reason"]) for e in errors] == [
        (line["row"], line["part"], line["reason"]) for line in attention
    ]

    # every number is kept once; each duplicate names a kept number
    ready = [line["telephone"] for line in lines if line["status"] == "ready"]
    assert len(ready) == len(set(ready))
    duplicates = {line["telephone"] for line in lines if line["status"] == "duplicate"}
    assert duplicates <= set(ready)
    assert {line["status"] for line in lines} <= {"ready", "invalid", "duplicate"}


FORMS = [
    ("national", ""),
    ("national", "9"),
    ("international", ""),
    ("international", "9"),
    ("international", "0057"),
    ("e164", ""),
]


@SETTINGS
@given(
    numbers=st.lists(_mobiles, min_size=1, max_size=25, unique=True),
    how=st.lists(st.integers(0, 5), min_size=25, max_size=25),
    days=st.lists(st.integers(1, 3650), min_size=25, max_size=25),
    form=st.sampled_from(FORMS),
)
def test_every_output_form_reads_back_as_the_same_number(
    numbers: list[str], how: list[int], days: list[int], form: tuple[str, str]
) -> None:
    number_form, prefix = form
    options = ("--number-form", number_form, "--dial-prefix", prefix) if prefix else (
        "--number-form", number_form,
    )  # fmt: skip
    rows = [(_written(phone, how[i]), str(days[i])) for i, phone in enumerate(numbers)]
    with tempfile.TemporaryDirectory() as folder:
        source = write_csv(Path(folder) / "numeros.csv", rows)
        lines = read_csv(dry_run(source, Path(folder) / "reports", *options) / "outcomes.csv")
        assert [line["status"] for line in lines] == ["ready"] * len(numbers)
        sent = [line["telephone"] for line in lines]
        assert all(telephone.startswith(prefix) for telephone in sent)
        bare = [telephone[len(prefix) :] for telephone in sent]

        # what phonenumbers reads in each form is the number that was written
        for phone, telephone in zip(numbers, bare, strict=True):
            shown = "+" + telephone if number_form == "international" else telephone
            parsed = phonenumbers.parse(shown, "CO")
            assert phonenumbers.national_significant_number(parsed) == phone
            assert parsed.country_code == 57 and phonenumbers.is_valid_number(parsed)

        # and the tool reads its own output as the same number with the same days
        again = write_csv(Path(folder) / "again.csv", [(t, line["days_block"]) for t, line in
                                                        zip(bare, lines, strict=True)])  # fmt: skip
        second = dry_run(again, Path(folder) / "reports", "--number-form", number_form)
        relines = read_csv(second / "outcomes.csv")
    assert [line["status"] for line in relines] == ["ready"] * len(numbers)
    assert [line["telephone"] for line in relines] == bare
    assert [line["days_block"] for line in relines] == [str(d) for d in days[: len(numbers)]]
