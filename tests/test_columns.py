"""importer.columns: the pair counts behind the bulk path's summary counts and report tallies."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from importer.columns import pair_counts

WORDS = st.sampled_from(["ready", "invalid", "duplicate", "valid", "too_short", "", None])


def _chunked(values: list[str | None], cuts: list[int]) -> pa.ChunkedArray:
    edges = sorted({0, len(values), *(c % (len(values) + 1) for c in cuts)})
    return pa.chunked_array(
        [pa.array(values[a:b], pa.string()) for a, b in itertools.pairwise(edges)]
        or [pa.array([], pa.string())],
        pa.string(),
    )


@settings(max_examples=200, deadline=None)
@given(
    pairs=st.lists(st.tuples(WORDS, WORDS), max_size=60),
    cuts_a=st.lists(st.integers(0, 60), max_size=4),
    cuts_b=st.lists(st.integers(0, 60), max_size=4),
)
def test_pair_counts_is_a_counter_of_the_pairs(
    pairs: list[tuple[str | None, str | None]], cuts_a: list[int], cuts_b: list[int]
) -> None:
    first = [a for a, _ in pairs]
    second = [b for _, b in pairs]
    expected = Counter(pairs)
    # chunked alike, chunked differently, and plain arrays: the same counts
    assert pair_counts(_chunked(first, cuts_a), _chunked(second, cuts_a)) == expected
    assert pair_counts(_chunked(first, cuts_a), _chunked(second, cuts_b)) == expected
    assert pair_counts(pa.array(first, pa.string()), _chunked(second, cuts_b)) == expected


def test_a_bulk_run_never_loads_the_query_engine(tmp_path: Path) -> None:
    """``Table.group_by`` loads Acero and its thread pool (~11 MB for the rest of a run, issue
    5's peak memory): a whole bulk dry run, counts and reports included, must do without it."""
    source = tmp_path / "phones.csv"
    source.write_text(
        "telefono,dias\n" + "".join(f"3{n:09d},30\n" for n in range(2000)) + "12,30\n",
        encoding="utf-8",
    )
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from importer.config import ReportOptions
        from importer.pipeline import RunRequest, run_import
        result = run_import(RunRequest(
            inputs=({str(source)!r},),
            report=ReportOptions(reports_dir=Path({str(tmp_path / "reports")!r})),
        ))
        print(result.summary["counts"]["by_status"])
        print(sorted(m for m in sys.modules if "acero" in m or m == "pyarrow.dataset"))
        """
    )
    env = {"DNC_IMPORT_BULK_BYTES": "0", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    counts, modules = done.stdout.strip().splitlines()
    assert "'ready': 2000" in counts and "'invalid': 1" in counts
    assert modules == "[]"
