"""Judge each phone and days cell of a ``RawRow`` and say what would be sent.

``validate(rows, options)`` streams one ``Outcome`` per number: ``ready`` (reason ``valid``)
with the exact ``telephone`` to send, or ``invalid`` with a stable reason code and a message
that quotes the raw value and says the fix. Duplicates are judged later, by the journal.

How a phone cell is read, in order (the first rule that applies decides):

1. blank (None, or only spaces) -> ``missing-phone``; a bool -> ``not-a-number``.
2. a numeric cell: an int, or a whole float below 1e15, is its integer digits; a float with a
   fraction -> ``not-a-whole-number``; a float of 1e15 or more has more significant digits than
   Excel keeps -> ``lost-digits-scientific-notation``; a negative number -> ``not-a-number``.
3. text, judged as a whole before any split (so the comma of ``3,19E+09`` is a decimal comma):
   scientific notation -> ``lost-digits-scientific-notation``; a float written as text
   (``3191234567.0``, ``3191234567,00``) -> its integer part; digits with one ``.`` and a
   non-zero fraction (``319123456.7``), or one ``,`` and one or two decimals
   (``3191234567,5``) -> ``not-a-whole-number``: a lone dot is never read as punctuation, so a
   float is never sent as a phone; comma thousands grouping (``3,191,234,567``) -> its digits;
   no digit at all (``N/A``, ``no tiene``) -> one ``not-a-number`` line.
4. otherwise the cell is split on ``/ ; , |`` and line breaks into one line per number
   (``part`` 1, 2, ...); empty pieces are dropped. Each piece then: scientific notation or a
   float as text as above; a date (``2024-01-15``, ``15/01/2024``, also checked on the whole
   cell before splitting) -> ``not-a-number``; letters other than an extension
   marker (``ext``, ``ext.``, ``extension``, ``anexo``, ``x``, ``#``) or characters other than
   digits, spaces, ``- . ( )`` and a leading ``+`` -> ``not-a-number``; then ``phonenumbers``
   parses it in ``--region`` and must find it possible and valid.

``raw_phone`` is the cell as a person reads it (``format_cell``) when the cell holds one number.
When a cell holds several, each line's ``raw_phone`` is its own piece, stripped: the ``row`` and
``part`` columns locate it in the source, and errors.csv can then be fixed and imported again
without sending the good numbers of that cell twice.

The ``telephone`` sent: ``national`` -> national significant number (``3191234567``), ``e164`` ->
``+573191234567``, ``international`` -> ``573191234567``; then ``--dial-prefix`` before it. A
foreign number (only with ``--allow-foreign``) is never sent in national form: ``national`` and
``international`` send its international digits (``12025550123``), ``e164`` sends its E.164.
An extension is never sent; the message says it was dropped.

Days: an int, a whole float, or text ``15``, `` 15 ``, ``+15``, ``15.0``, ``15,0``. Blank ->
``--default-days`` or ``missing-days``. Text ``1.000`` / ``1,000`` could be 1 or 1000 and is
``days-not-a-number`` (never guessed). When the phone and the days are both bad, the phone's
reason wins and the message names both. ``telephone`` is set whenever the phone is valid.

Speed: most cells are clean numbers (``3191234567``, ``+57 319 123 4567``, ``3191234567.0``). For
them the fast path (``importer.fastpath``) finds what ``phonenumbers.parse``, ``is_valid_number``
and ``number_type`` would, from phonenumbers' own metadata for the region, without parsing;
whenever it is unsure the full parse decides, as it does for every invalid number.
``tests/test_validator_fastpath.py`` proves both ways give the same outcomes.

The rules live by what they judge: ``importer.phone_validator`` (phone cells) and
``importer.days_validator`` (days cells, and how a cell is written). This module checks the
options and turns their verdicts into ``Outcome`` lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import partial

import phonenumbers

from importer.config import NumberForm, ValidateOptions
from importer.days_validator import _Days, _judge_days, format_cell, judge_days
from importer.errors import UsageError
from importer.fastpath import FastPath
from importer.model import CellValue, Outcome, RawRow, Reason, Status
from importer.phone_validator import (
    _TYPE_NAMES,
    MISSING_PHONE_MESSAGE,
    _country_name,
    _described,
    _judge_phone_cell,
    _Phone,
    _quick,
    _region,
    _remembered,
    _telephone,
    digits_message,
)

__all__ = [
    "MISSING_PHONE_MESSAGE",
    "ColumnTerms",
    "check_options",
    "column_terms",
    "digits_message",
    "format_cell",
    "judge_days",
    "validate",
]

_DIAL_PREFIX = re.compile(r"[0-9]{1,4}")
_DAYS_CACHE_SIZE = 4096
"""Distinct days cells remembered per run: exports repeat a handful (30, 90, 365...)."""


def check_options(options: ValidateOptions) -> None:
    """Raise ``UsageError`` naming the option and the fix if ``options`` cannot be used.

    >>> check_options(ValidateOptions(region="CO", dial_prefix="9"))
    """
    region = options.region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise UsageError(
            f"--region {options.region} is not a region code phonenumbers knows; "
            "use a two-letter code such as CO, MX or PE"
        )
    if options.dial_prefix and not _DIAL_PREFIX.fullmatch(options.dial_prefix):
        raise UsageError(
            f"--dial-prefix {options.dial_prefix!r} is not 1 to 4 digits; "
            "give the digits your dialer puts before each number, such as 9"
        )
    if options.dial_prefix and options.form is NumberForm.E164:
        raise UsageError(
            "--dial-prefix cannot be used with --number-form e164 (an E.164 number starts "
            "with +); use --number-form national or international with it"
        )
    if options.max_days < 1:
        raise UsageError(
            f"--max-days {options.max_days} is below 1; "
            "give the longest block you allow in days, such as 3650"
        )
    if options.default_days is not None and not 1 <= options.default_days <= options.max_days:
        raise UsageError(
            f"--default-days {options.default_days} is not between 1 and --max-days "
            f"{options.max_days}; give a whole number of days in that range"
        )


@dataclass(frozen=True, slots=True)
class ColumnTerms:
    """What ``importer.columnar_validator`` needs to write, for whole columns, the verdicts that
    ``validate`` writes for clean valid numbers and for plain digits that are not valid."""

    fast: FastPath
    head: str
    """A valid number's ``telephone`` is ``head`` + its national significant number."""
    sent_as: dict[int, str]
    """By PhoneNumberType: the message of a valid number is ``sent_as[type]`` + its telephone."""
    where: str
    """The country named in the messages of this region's numbers (``CO``)."""


def column_terms(options: ValidateOptions) -> ColumnTerms | None:
    """The terms of ``options`` for the column validator; None where the region has no fast path.

    Raises ``UsageError`` for bad options, as ``validate`` does.
    """
    check_options(options)
    region = _region(options.region.upper())
    if region.fast is None:
        return None
    code = region.country_code
    return ColumnTerms(
        fast=region.fast,
        head=_telephone("", code, options, False),
        sent_as={kind: _described(code, kind, False) + "; sent as " for kind in _TYPE_NAMES},
        where=_country_name(code),
    )


_FastPath = FastPath
"""The fast path under its old name, where its tests reach it."""


def validate(rows: Iterable[RawRow], options: ValidateOptions) -> Iterator[Outcome]:
    """Yield one ``Outcome`` per number of each row: ``ready``/``valid`` or ``invalid``.

    Streams: each row is judged as it comes. Bad options raise ``UsageError`` at the call,
    before any row is read.
    """
    check_options(options)
    return _validate(rows, options)


def _validate(
    rows: Iterable[RawRow], options: ValidateOptions, fast: bool = True
) -> Iterator[Outcome]:
    """``validate`` without the option check; ``fast=False`` sends every number to the full
    parse (and skips every shortcut), as a reference for the fast path's tests."""
    region = _region(options.region.upper(), fast)
    quick = _quick(region, options)
    judged = (
        _remembered(region, options)
        if fast
        else partial(_judge_phone_cell, region=region, options=options)
    )
    days_seen: dict[tuple[type, CellValue], tuple[str, _Days]] = {}
    for row in rows:
        key = (row.days.__class__, row.days)
        known = days_seen.get(key) if fast else None
        if known is None:
            raw_days = format_cell(row.days)
            known = raw_days, _judge_days(row.days, raw_days, options)
            if len(days_seen) < _DAYS_CACHE_SIZE:
                days_seen[key] = known
        raw_days, days = known
        valid = quick(row.phone) if quick is not None else None
        if valid is not None:  # what _outcome makes of a valid phone, inline
            raw_phone, telephone, message = valid
            status, reason = Status.READY, Reason.VALID
            if days.reason is not None:
                status, reason, message = Status.INVALID, days.reason, days.message
            elif days.message:
                message = f"{message}; {days.message}"
            yield Outcome(
                row.source_file,
                row.sheet,
                row.row,
                1,
                raw_phone,
                raw_days,
                telephone,
                days.value,
                status,
                reason,
                message,
            )
            continue
        for part, phone in enumerate(judged(row.phone), start=1):
            yield _outcome(row, part, phone, raw_days, days)


def _outcome(row: RawRow, part: int, phone: _Phone, raw_days: str, days: _Days) -> Outcome:
    if phone.reason is not None:
        status, reason, message = Status.INVALID, phone.reason, phone.message
        if days.reason is not None:
            message = f"{message}; also {days.message}"
    elif days.reason is not None:
        status, reason, message = Status.INVALID, days.reason, days.message
    else:
        status, reason, message = Status.READY, Reason.VALID, phone.message
        if days.message:
            message = f"{message}; {days.message}"
    return Outcome(
        row.source_file,
        row.sheet,
        row.row,
        part,
        phone.raw,
        raw_days,
        phone.telephone,
        days.value,
        status,
        reason,
        message,
    )
