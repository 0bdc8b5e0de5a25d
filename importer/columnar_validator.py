"""The validator over whole columns: what ``validate`` says of a batch of rows, at C speed.

A big export is mostly clean valid numbers, and judging them one Python call at a time is most of
a big run's time. For a batch of rows of one sheet given as columns (``RowColumns``), this module
finds with pyarrow, over whole columns, the verdicts of three kinds of phone cells:

- a clean valid number (``3191234567``, ``+57 319 123 4567``, ``3191234567.0``, a whole numeric
  cell): what the validator's fast path (``phone_validator._quick`` and ``importer.fastpath``) says,
  with the same regular expressions, built from phonenumbers' metadata (``FastPatterns``) and run
  by RE2 instead of ``re``;
- plain digits (3 to 17 of them) that phonenumbers would read as a national number of the
  region without any prefix, and finds too short, too long or not valid;
- an empty cell.

Every other row goes through ``validate`` itself, one row at a time, so its verdict is by
construction the one ``validate`` gives. Days cells are judged once per distinct cell by
``validator.judge_days``. The outcome lines come out as a table (``LINE_SCHEMA``) in the order
``validate`` yields them.

The proof that both ways agree is differential: ``tests/test_columnar_validator.py`` compares
every line with ``validate``'s (hypothesis-made cells of several regions, and a sample of the
benchmark set), and ``python -m benchmarks.bench_validator --columns`` does so on the whole 1M set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from importer.columns import LINE_SCHEMA, SENT_AS, RowColumns, with_messages
from importer.config import ValidateOptions
from importer.fastpath import LONGEST_INPUT, FastPatterns, TypeBranches
from importer.model import CellValue, Reason, Status
from importer.validator import (
    MISSING_PHONE_MESSAGE,
    ColumnTerms,
    column_terms,
    digits_message,
    judge_days,
    validate,
)

__all__ = ["ColumnValidator"]

_CLEAN = r"^\+?[ ()\-]*[0-9][0-9 ()\-]*$"
"""``phone_validator._CLEAN_TEXT``, whole."""
_CLEAN_DATE = r"^ *[0-9]{4}-[0-9]{2}-[0-9]{2} *$"
"""``phone_validator._DATE`` on a clean cell stripped (a clean cell has no / and only spaces)."""
_WHOLE_FLOAT = r"^(?P<whole>\+?[0-9]+)[.,]0+$"
"""``phone_validator._WHOLE_FLOAT_TEXT``, whole."""
_MARKS = " ()-+"
"""What ``_quick`` drops from a clean cell (a + only ever comes first)."""
_PLAIN_DIGITS = r"^[0-9]{3,17}$"
"""Digits phonenumbers parses as they are (2 to 17, ``_MIN/_MAX_LENGTH_FOR_NSN``; the fast path
reads 3 or more), where this module also writes the verdict on an invalid number."""


class ColumnValidator:
    """``validate`` for batches of ``RowColumns``, with one region's terms made once.

    >>> ColumnValidator(ValidateOptions()).lines(batch).num_rows  # doctest: +SKIP
    65536
    """

    def __init__(self, options: ValidateOptions) -> None:
        self.options = options
        self.terms = _usable(column_terms(options))
        sent_as = {} if self.terms is None else self.terms.sent_as
        self.heads = pa.array([sent_as.get(k, "") for k in range(max(sent_as, default=0) + 1)])
        """What a valid number's message says before the number, by PhoneNumberType."""

    def lines(self, batch: RowColumns) -> pa.Table:
        """The outcome lines of ``batch``, as ``validate`` would yield them, as a table."""
        return with_messages(self.compact_lines(batch))

    def compact_lines(self, batch: RowColumns) -> pa.Table:
        """``lines``, but for the messages of valid numbers, held as ``columns.SENT_AS``."""
        size = len(batch.rows)
        days = self._days(batch)
        if self.terms is None:
            return self._one_by_one(batch, list(range(size))).drop_columns(["pos"])
        phones = batch.phones
        judged = _judge(phones, self.terms.fast.patterns)
        found = [
            _valid_lines(batch, days, judged, self.terms, self.heads),
            _invalid_lines(batch, days, judged, self.terms, self.heads),
            _missing_lines(batch, days, judged.missing, self.heads),
        ]
        decided = pc.or_(pc.or_(judged.valid, judged.invalid), judged.missing)
        slow = pc.indices_nonzero(pc.invert(decided)).to_pylist()
        if slow:
            found.append(self._one_by_one(batch, slow))
        table = pa.concat_tables([part for part in found if part.num_rows])
        if slow:
            table = table.sort_by([("pos", "ascending"), ("part", "ascending")])
        else:
            table = table.take(pc.sort_indices(table.column("pos")))
        return table.drop_columns(["pos"])

    def _days(self, batch: RowColumns) -> _DaysVerdicts:
        """Each row's days verdict, judged once per distinct cell."""
        days = batch.days
        if days is None:
            verdicts = [judge_days(None, self.options)]
            index = _zeros(len(batch.rows), pa.int32())
        elif isinstance(days, list):
            verdicts, index = _judged_cells(days, self.options)
        else:
            encoded = pc.dictionary_encode(days)
            verdicts = [judge_days(cell, self.options) for cell in encoded.dictionary.to_pylist()]
            index = encoded.indices
            if encoded.null_count:  # the reader gives none; a null would be an empty cell
                verdicts.append(judge_days(None, self.options))
                index = pc.fill_null(index, len(verdicts) - 1)
        raws, values, reasons, messages = zip(*verdicts, strict=True)
        states = [
            2 if reason is not None else int(bool(message))
            for _raw, _value, reason, message in verdicts
        ]
        return _DaysVerdicts(
            index=index,
            raw=pa.array(raws, pa.string()),
            value=pa.array(values, pa.int64()),
            reason=pa.array(reasons, pa.string()),
            message=pa.array(messages, pa.string()),
            state=pa.array(states, pa.int8()),
        )

    def _one_by_one(self, batch: RowColumns, slow: list[int]) -> pa.Table:
        """The lines of the rows at positions ``slow``, by ``validate`` itself."""
        columns: list[list[Any]] = [[] for _ in range(len(LINE_SCHEMA) + 1)]
        at = -1
        for outcome in validate((batch.raw_row(position) for position in slow), self.options):
            at += outcome.part == 1  # every row has lines, and its first one is part 1
            values = (
                outcome.row, outcome.part, outcome.raw_phone, outcome.raw_days, outcome.telephone,
                outcome.days_block, outcome.status.value, outcome.reason, outcome.message,
                slow[at],
            )  # fmt: skip
            for column, value in zip(columns, values, strict=True):
                column.append(value)
        types = [*LINE_SCHEMA.types, pa.int64()]
        arrays = [pa.array(values, kind) for values, kind in zip(columns, types, strict=True)]
        arrays.insert(len(LINE_SCHEMA), _no_head(len(arrays[0]), self.heads))
        return pa.Table.from_arrays(arrays, names=[*LINE_SCHEMA.names, SENT_AS, "pos"])


@dataclass
class _DaysVerdicts:
    """The distinct days cells' verdicts, and each row's ``index`` into them."""

    index: pa.Array
    raw: pa.Array
    value: pa.Array
    reason: pa.Array
    """Null where the days are usable."""
    message: pa.Array
    state: pa.Array
    """0: usable, no message; 1: usable with a message (--default-days); 2: not usable."""


def _usable(terms: ColumnTerms | None) -> ColumnTerms | None:
    """The terms, if RE2 (pyarrow) takes every pattern of them; else None (``validate`` decides)."""
    if terms is None:
        return None
    empty = pa.array([], pa.string())
    try:
        for pattern in _all_patterns(terms.fast.patterns):
            pc.match_substring_regex(empty, pattern)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return terms


def _all_patterns(patterns: FastPatterns) -> list[str]:
    found = [_start(patterns.plain), _whole(patterns.general)]
    found += [_start(p) for p in (patterns.idd, patterns.national_prefix) if p is not None]
    for branches in patterns.types.values():
        found.append(_whole(branches.overall))
        found += [_whole(p) for group, _kind in branches.branches for p in group]
        found.append(_whole("|".join(group[0] for group, _kind in branches.branches)))
    return found


def _start(pattern: str) -> str:
    """``re.match(pattern)`` in RE2."""
    return f"^(?:{pattern})"


def _whole(pattern: str) -> str:
    """``re.fullmatch(pattern)`` in RE2."""
    return f"^(?:{pattern})$"


def _zeros(size: int, kind: pa.DataType) -> pa.Array:
    return pc.fill_null(pa.nulls(size, kind), 0)


def _falses(size: int) -> pa.Array:
    return pc.fill_null(pa.nulls(size, pa.bool_()), False)


def _repeat(value: str, size: int) -> pa.Array:
    """A string column of ``size`` times ``value``."""
    return pc.take(pa.array([value], pa.string()), _zeros(size, pa.int8()))


def _judged_cells(
    cells: Sequence[CellValue], options: ValidateOptions
) -> tuple[list[tuple[str, int | None, str | None, str]], pa.Array]:
    """Verdicts per distinct (class, value) of workbook days cells, and each row's index."""
    seen: dict[tuple[type, CellValue], int] = {}
    verdicts: list[tuple[str, int | None, str | None, str]] = []
    index: list[int] = []
    for cell in cells:
        key = (cell.__class__, cell)
        at = seen.get(key)
        if at is None:
            at = seen[key] = len(verdicts)
            verdicts.append(judge_days(cell, options))
        index.append(at)
    return verdicts, pa.array(index, pa.int32())


@dataclass
class _Judged:
    """What this module found of each phone cell of a batch."""

    national: pa.Array
    """The national number of a clean valid number; null elsewhere."""
    kind: pa.Array
    """Its PhoneNumberType (int8); null elsewhere."""
    valid: pa.Array
    invalid: pa.Array
    """Plain digits that are not a valid number."""
    missing: pa.Array
    """An empty cell."""


def _judge(phones: pa.Array, patterns: FastPatterns) -> _Judged:
    """Sort a batch's phone cells: clean valid numbers, invalid plain digits, empty cells."""
    digits_only = pc.fill_null(pc.ascii_is_decimal(phones), False)  # [0-9]+, no regex
    digits, plus = _digits(phones, digits_only)
    national, kind = _judge_digits(digits, plus, patterns)
    valid = pc.is_valid(kind)
    # plain digits that are not valid: only among the (few) cells that are not valid
    others = pc.and_not(digits_only, valid)
    some = pc.filter(phones, others)
    plain = pc.and_not(
        pc.match_substring_regex(some, _PLAIN_DIGITS),
        pc.match_substring_regex(some, _start(patterns.plain)),
    )
    return _Judged(
        national=national,
        kind=kind,
        valid=valid,
        invalid=pc.replace_with_mask(_falses(len(phones)), others, plain),
        missing=pc.fill_null(pc.equal(phones, ""), False),
    )


def _digits(phones: pa.Array, digits_only: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The digits ``_quick`` judges of each cell and whether a + came first; null: not judged.

    Digits are judged as they are; a clean cell (no date) loses its marks; a whole float written
    as text keeps its integer part.
    """
    others = pc.and_not(pc.is_valid(phones), digits_only)
    some = pc.filter(phones, others)
    short = pc.less_equal(pc.utf8_length(some), LONGEST_INPUT)
    clean = pc.and_not(
        pc.match_substring_regex(some, _CLEAN), pc.match_substring_regex(some, _CLEAN_DATE)
    )
    whole = pc.struct_field(pc.extract_regex(some, _WHOLE_FLOAT), [0])
    source = pc.if_else(short, pc.if_else(clean, some, whole), pa.scalar(None, pa.string()))
    digits = pc.if_else(digits_only, phones, pa.scalar(None, pa.string()))
    stripped = source
    for mark in _MARKS:
        stripped = pc.replace_substring(stripped, mark, "")
    digits = pc.replace_with_mask(digits, others, stripped)
    plus = pc.replace_with_mask(
        _falses(len(phones)), others, pc.fill_null(pc.starts_with(source, "+"), False)
    )
    return digits, plus


def _judge_digits(
    digits: pa.Array, plus: pa.Array, patterns: FastPatterns
) -> tuple[pa.Array, pa.Array]:
    """``FastPath.judge_digits`` over a column: (national number, PhoneNumberType); null: None."""
    national = _national(digits, plus, patterns)
    size = pc.utf8_length(national)
    kind = pa.nulls(len(national), pa.int8())
    for length, branches in patterns.types.items():
        at = pc.fill_null(pc.equal(size, length), False)
        if pc.any(at).as_py():
            kind = pc.replace_with_mask(kind, at, _types(pc.filter(national, at), branches))
    return pc.if_else(pc.is_valid(kind), national, pa.scalar(None, pa.string())), kind


def _types(national: pa.Array, branches: TypeBranches) -> pa.Array:
    """The first branch each number fully matches (int8 PhoneNumberType); null: none.

    Most numbers are of the last type (mobile): a number that matches no earlier branch's first
    pattern (their alternation, one pass) is of the last type if it matches that one.
    """
    fits = pc.match_substring_regex(national, _whole(branches.overall))
    *earlier, (last, last_kind) = branches.branches
    hit = fits
    for pattern in last:
        hit = pc.and_(hit, pc.match_substring_regex(national, _whole(pattern)))
    if earlier:
        maybe = pc.match_substring_regex(national, _whole("|".join(g[0] for g, _k in earlier)))
        hit = pc.and_not(hit, maybe)
    found = pc.if_else(hit, pa.scalar(last_kind, pa.int8()), pa.scalar(None, pa.int8()))
    if not earlier or not pc.any(pc.and_(fits, maybe)).as_py():
        return found
    at = pc.and_(fits, maybe)
    some = pc.filter(national, at)
    kinds = pa.nulls(len(some), pa.int8())
    for group, which in branches.branches:
        match = pc.fill_null(pa.nulls(len(some), pa.bool_()), True)
        for pattern in group:
            match = pc.and_(match, pc.match_substring_regex(some, _whole(pattern)))
        kinds = pc.if_else(pc.and_(match, pc.is_null(kinds)), pa.scalar(which, pa.int8()), kinds)
    return pc.replace_with_mask(found, at, kinds)


def _national(digits: pa.Array, plus: pa.Array, patterns: FastPatterns) -> pa.Array:
    """``FastPath.judge_digits`` up to the national number (``FastPath._national``); null: None.

    Digits without a + that start with none of the prefixes in ``patterns.plain`` are their own
    national number; the others (a few) go through the steps of ``FastPath._national``.
    """
    count = pc.utf8_length(digits)
    sized = pc.and_(pc.greater_equal(count, 3), pc.less_equal(count, LONGEST_INPUT))
    special = pc.fill_null(
        pc.or_(plus, pc.match_substring_regex(digits, _start(patterns.plain))), False
    )
    national = digits
    if pc.any(special).as_py():
        some = pc.filter(digits, special)
        national = pc.replace_with_mask(
            digits, special, _prefixed(some, pc.filter(plus, special), patterns)
        )
    return pc.if_else(sized, national, pa.scalar(None, pa.string()))


def _prefixed(digits: pa.Array, plus: pa.Array, patterns: FastPatterns) -> pa.Array:
    """``FastPath._national`` of digits after a +, or starting with a prefix; null: None."""
    null = pa.scalar(None, pa.string())
    coded = pc.starts_with(digits, patterns.code)
    rest = pc.utf8_slice_codeunits(digits, len(patterns.code))
    prefix = patterns.national_prefix
    general = _whole(patterns.general)
    # the country code is dropped where phonenumbers drops it: not general(digits) and
    # general(rest), or too long with it
    drop = pc.or_(
        pc.and_not(
            pc.match_substring_regex(rest, general), pc.match_substring_regex(digits, general)
        ),
        pc.is_in(pc.utf8_length(digits), value_set=pa.array(sorted(patterns.too_long), pa.int32())),
    )
    bare = pc.if_else(coded, pc.if_else(drop, rest, digits), digits)
    if prefix is not None:
        prefixed = pc.and_(pc.not_equal(rest, ""), pc.match_substring_regex(rest, _start(prefix)))
        bare = pc.if_else(pc.and_(coded, prefixed), null, bare)
    if patterns.idd is not None:
        bare = pc.if_else(pc.match_substring_regex(digits, _start(patterns.idd)), null, bare)
    with_plus = (
        pc.if_else(coded, rest, null) if patterns.plus else pa.nulls(len(digits), pa.string())
    )
    national = pc.if_else(plus, with_plus, bare)
    refused = pc.starts_with(national, "0")
    if prefix is not None:
        refused = pc.or_(
            refused,
            pc.and_(pc.not_equal(national, ""), pc.match_substring_regex(national, _start(prefix))),
        )
    return pc.if_else(refused, null, national)


def _group(batch: RowColumns, days: _DaysVerdicts, at: pa.Array) -> tuple[pa.Array, ...]:
    """(rows, phones, days index, positions) of the rows of a batch where ``at`` is true."""
    positions = pc.indices_nonzero(at)
    return (
        pc.take(batch.rows, positions),
        pc.take(batch.phones, positions),
        pc.take(days.index, positions),
        pc.cast(positions, pa.int64()),
    )


def _table(
    rows: pa.Array, raw_phone: pa.Array, days: _DaysVerdicts, index: pa.Array,
    telephone: pa.Array, status: pa.Array, reason: pa.Array, message: pa.Array,
    sent_as: pa.Array, positions: pa.Array,
) -> pa.Table:  # fmt: skip
    columns = [
        rows, pc.fill_null(pa.nulls(len(rows), pa.int64()), 1), raw_phone,
        pc.take(days.raw, index), telephone, pc.take(days.value, index), status, reason,
        message, sent_as, positions,
    ]  # fmt: skip
    return pa.Table.from_arrays(columns, names=[*LINE_SCHEMA.names, SENT_AS, "pos"])


def _no_head(size: int, heads: pa.Array) -> pa.Array:
    """A ``SENT_AS`` column of ``size`` lines whose messages are their own."""
    return pa.DictionaryArray.from_arrays(pa.nulls(size, pa.int8()), heads)


def _valid_lines(
    batch: RowColumns, days: _DaysVerdicts, judged: _Judged, terms: ColumnTerms, heads: pa.Array
) -> pa.Table:
    """The lines of the clean valid numbers (the inline branch of ``validator._validate``).

    A line whose message is its number's alone (``heads[kind]`` + its telephone) has none
    here: ``SENT_AS`` says it (``columns.with_messages``).
    """
    rows, phones, index, positions = _group(batch, days, judged.valid)
    national = pc.take(judged.national, pc.indices_nonzero(judged.valid))
    kind = pc.take(judged.kind, pc.indices_nonzero(judged.valid))
    telephone = (
        national if not terms.head else pc.binary_join_element_wise(terms.head, national, "")
    )
    size = len(rows)
    status, reason = _repeat(Status.READY.value, size), _repeat(Reason.VALID, size)
    message = pa.nulls(size, pa.string())
    state = pc.take(days.state, index)
    if size and pc.max(state).as_py() > 0:
        bad, told = pc.equal(state, 2), pc.equal(state, 1)
        number = pc.binary_join_element_wise(pc.take(heads, kind), telephone, "")
        with_days = pc.binary_join_element_wise(number, pc.take(days.message, index), "; ")
        message = pc.case_when(
            pc.make_struct(bad, told), pc.take(days.message, index), with_days, message
        )
        status = pc.if_else(bad, Status.INVALID.value, status)
        reason = pc.if_else(bad, pc.take(days.reason, index), reason)
        kind = pc.if_else(pc.equal(state, 0), kind, pa.scalar(None, pa.int8()))
    sent_as = pa.DictionaryArray.from_arrays(kind, heads)
    return _table(rows, phones, days, index, telephone, status, reason, message, sent_as, positions)


def _invalid_lines(
    batch: RowColumns, days: _DaysVerdicts, judged: _Judged, terms: ColumnTerms, heads: pa.Array
) -> pa.Table:
    """The lines of plain digits that are not a valid number (``_judge_digits``' verdicts).

    Such digits are their own national number, which phonenumbers finds too short or too long by
    their count alone, and else not valid (no type matched).
    """
    rows, phones, index, positions = _group(batch, days, judged.invalid)
    patterns = terms.fast.patterns
    count = pc.utf8_length(phones)
    which = pc.make_struct(
        pc.is_in(count, value_set=pa.array(sorted(patterns.too_short), pa.int32())),
        pc.is_in(count, value_set=pa.array(sorted(patterns.too_long), pa.int32())),
    )
    reasons = (Reason.TOO_SHORT, Reason.TOO_LONG, Reason.INVALID_NUMBER)
    messages = []
    for kind in reasons:
        before, after = digits_message(kind, "'\x00'", terms.where).split("\x00")
        messages.append(pc.binary_join_element_wise(before, phones, after, ""))
    return _bad_lines(
        rows,
        phones,
        days,
        index,
        positions,
        pc.case_when(which, *reasons),
        pc.case_when(which, *messages),
        heads,
    )


def _missing_lines(
    batch: RowColumns, days: _DaysVerdicts, missing: pa.Array, heads: pa.Array
) -> pa.Table:
    """The lines of empty phone cells."""
    rows, phones, index, positions = _group(batch, days, missing)
    size = len(rows)
    return _bad_lines(
        rows,
        phones,
        days,
        index,
        positions,
        _repeat(Reason.MISSING_PHONE, size),
        _repeat(MISSING_PHONE_MESSAGE, size),
        heads,
    )


def _bad_lines(
    rows: pa.Array, phones: pa.Array, days: _DaysVerdicts, index: pa.Array,
    positions: pa.Array, reason: pa.Array, message: pa.Array, heads: pa.Array,
) -> pa.Table:  # fmt: skip
    """Lines whose phone is not valid (``validator._outcome``): the phone's reason wins."""
    size = len(rows)
    if size and pc.any(pc.equal(pc.take(days.state, index), 2)).as_py():
        also = pc.binary_join_element_wise(message, pc.take(days.message, index), "; also ")
        message = pc.if_else(pc.equal(pc.take(days.state, index), 2), also, message)
    return _table(
        rows,
        phones,
        days,
        index,
        _repeat("", size),
        _repeat(Status.INVALID.value, size),
        reason,
        message,
        _no_head(size, heads),
        positions,
    )
