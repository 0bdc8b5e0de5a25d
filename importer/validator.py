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
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, NamedTuple

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

from importer.config import NumberForm, ValidateOptions
from importer.errors import UsageError
from importer.fastpath import LONGEST_INPUT, FastPath
from importer.model import CellValue, Outcome, RawRow, Reason, Status

__all__ = [
    "ColumnTerms",
    "check_options",
    "column_terms",
    "digits_message",
    "format_cell",
    "judge_days",
    "validate",
]

_TRUSTED_FLOAT_LIMIT = 1e15
"""A float this large has 16+ digits; Excel keeps 15 significant digits, so some are lost."""

_HUGE = 10**18
"""Larger than any phone number or days value; never turned into text or compared as such."""
_QUOTE_LIMIT = 80
"""Messages quote at most this many characters of a cell."""

_SCIENTIFIC = re.compile(r"[+-]?\s*\d+(?:[.,]\d*)?\s*[eE]\s*[+-]?\s*\d+")
_FLOAT_TEXT = re.compile(r"(\+?\d+)([.,])(\d+)")
_COMMA_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3}){2,}")
_SEPARATORS = re.compile(r"[/;,|\r\n]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2}(?:\d{2})?")
_EXTENSION = re.compile(r"(?:ext(?:ensi[oó]n|n)?\.?|anexo|x|#)\s*:?\s*(\d{1,7})\s*$", re.IGNORECASE)
_PHONE_CHARS = re.compile(r"\+?[0-9\s().\-\u2010-\u2015]+")
_HAS_DIGIT = re.compile(r"[0-9]")
_DIAL_PREFIX = re.compile(r"[0-9]{1,4}")
_DAYS_TEXT = re.compile(r"([+-]?)(\d+)(?:([.,])(\d+))?")
_DAYS_THOUSANDS = re.compile(r"\d{1,3}[.,]\d{3}")
_CLEAN_TEXT = re.compile(r"\+?[ ()\-]*[0-9][0-9 ()\-]*")
"""A cell no earlier rule can catch but a date: only digits, spaces, ( ) - and a leading +."""
_WHOLE_FLOAT_TEXT = re.compile(r"(\+?[0-9]+)[.,]0+")
"""A float written as text with a zero fraction (``3191234567.0``): its integer part counts."""
_DAYS_CACHE_SIZE = 4096
"""Distinct days cells remembered per run: exports repeat a handful (30, 90, 365...)."""
_PHONE_CACHE_SIZE = 4096
_PHONE_CACHE_LONGEST = 40
"""Verdicts remembered per run for phone cells that are not a clean valid number: exports repeat
a few (``N/A``, ``no tiene``, blanks), and the full parse is the validator's dearest step."""

MISSING_PHONE_MESSAGE = "the phone cell is empty; fill it in or delete the row"
_DIGITS_MESSAGES = {
    Reason.TOO_SHORT: "{quoted} is too short for a {where} number",
    Reason.TOO_LONG: "{quoted} is too long for a {where} number",
    Reason.INVALID_NUMBER: "{quoted} is not a valid {where} number; check its digits in the source",
}

_TYPE_NAMES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed-line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed-line or mobile",
    PhoneNumberType.TOLL_FREE: "toll-free",
    PhoneNumberType.PREMIUM_RATE: "premium-rate",
    PhoneNumberType.SHARED_COST: "shared-cost",
    PhoneNumberType.VOIP: "VoIP",
    PhoneNumberType.PERSONAL_NUMBER: "personal",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "UAN",
    PhoneNumberType.VOICEMAIL: "voicemail",
}


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


def format_cell(value: CellValue) -> str:
    """The raw cell as a person would read it, for ``raw_phone`` and ``raw_days``.

    >>> format_cell(3191234567.0), format_cell(15.5), format_cell(True), format_cell(None)
    ('3191234567', '15.5', 'TRUE', '')

    Floats of 1e15 or more keep their exponent form (``1.2345678901234567e+18``): writing
    them as integers would show digits that were never in the source.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _TRUSTED_FLOAT_LIMIT:
            return str(int(value))
        return repr(value)
    try:
        return str(value)
    except ValueError:  # an int past Python's int-to-text limit (4300 digits)
        return f"<an integer of more than {sys.get_int_max_str_digits()} digits>"


def digits_message(reason: str, quoted: str, where: str) -> str:
    """The message of a number phonenumbers finds too short, too long or not valid.

    >>> digits_message(Reason.TOO_SHORT, "'30567'", "CO")
    "'30567' is too short for a CO number"
    """
    return _DIGITS_MESSAGES[reason].format(quoted=quoted, where=where)


def judge_days(
    value: CellValue, options: ValidateOptions
) -> tuple[str, int | None, str | None, str]:
    """``(raw_days, days_block, reason, message)`` of a days cell: ``reason`` None when usable.

    >>> judge_days("30", ValidateOptions())
    ('30', 30, None, '')
    """
    raw = format_cell(value)
    days = _judge_days(value, raw, options)
    return raw, days.value, days.reason, days.message


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


@dataclass(frozen=True, slots=True)
class _Region:
    code: str
    country_code: int
    fast: FastPath | None
    """None: every number goes through the full parse."""


class _Phone(NamedTuple):
    """The verdict on one number of a phone cell: ``reason`` is None when it is valid.

    A NamedTuple, as ``_Days``: one is made per number, and a frozen dataclass is slow to make.
    """

    raw: str
    telephone: str
    reason: str | None
    message: str


class _Days(NamedTuple):
    """The verdict on a days cell: ``reason`` is None when ``value`` is usable."""

    value: int | None
    reason: str | None
    message: str


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


def _remembered(region: _Region, options: ValidateOptions) -> Callable[[CellValue], list[_Phone]]:
    """``_judge_phone_cell`` remembering the verdicts on short text cells (see _PHONE_CACHE_SIZE).

    Its verdicts depend on the cell alone (the region and options are fixed for a run), and they
    are immutable: a remembered one is the one the call would make.
    """
    seen: dict[str, list[_Phone]] = {}

    def judged(value: CellValue) -> list[_Phone]:
        if type(value) is not str or len(value) > _PHONE_CACHE_LONGEST:
            return _judge_phone_cell(value, region, options)
        found = seen.get(value)
        if found is None:
            found = _judge_phone_cell(value, region, options)
            if len(seen) < _PHONE_CACHE_SIZE:
                seen[value] = found
        return found

    return judged


def _quick(
    region: _Region, options: ValidateOptions
) -> Callable[[CellValue], tuple[str, str, str] | None] | None:
    """(raw_phone, telephone, message) of a cell that is one clean valid number, else None.

    It comes to what ``_judge_phone_cell`` gives such a cell (text that ``_CLEAN_TEXT`` matches
    and is no date, a whole float as text, a whole float below 1e15, an int from 0 to
    ``_HUGE``), in one call: most cells of a big export are such cells, and each call costs.
    """
    fast = region.fast
    if fast is None:
        return None
    judge, clean, date = fast.judge_digits, _CLEAN_TEXT.fullmatch, _DATE.fullmatch
    whole_float = _WHOLE_FLOAT_TEXT.fullmatch
    head = _telephone("", region.country_code, options, False)
    sent_as = {
        kind: _described(region.country_code, kind, False) + "; sent as " for kind in _TYPE_NAMES
    }

    def quick(value: Any) -> tuple[str, str, str] | None:  # Any: the class is checked, fast
        kind = value.__class__
        if kind is str:
            if len(value) > LONGEST_INPUT:
                return None
            raw: str = value
            if not clean(value):
                written = whole_float(value)  # the rule for floats as text, in _judge_phone_cell
                if written is None:
                    return None
                whole: str = written.group(1)
                found = judge(whole[1:], True) if whole[0] == "+" else judge(whole, False)
            elif "-" in value and date(value.strip()):
                return None
            elif value.isdigit():
                found = judge(value, False)
            else:
                digits = value.replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
                found = judge(digits.replace("+", ""), value[0] == "+")
        elif kind is float:
            if not (0 <= value < _TRUSTED_FLOAT_LIMIT and value.is_integer()):
                return None
            raw = str(int(value))
            found = judge(raw, False)
        elif kind is int:
            if not 0 <= value < _HUGE:
                return None
            raw = str(value)
            found = judge(raw, False)
        else:
            return None
        if found is None:
            return None
        telephone = head + found[0]
        return raw, telephone, sent_as[found[1]] + telephone

    return quick


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


@cache
def _region(code: str, fast: bool = True) -> _Region:
    return _Region(
        code, phonenumbers.country_code_for_region(code), FastPath.build(code) if fast else None
    )


def _quote(raw: str) -> str:
    """``raw`` quoted for a message; a huge cell is cut (``raw_phone`` keeps all of it)."""
    if len(raw) > _QUOTE_LIMIT:
        return repr(raw[: _QUOTE_LIMIT - 3] + "...")
    return repr(raw)


# --- phones ---------------------------------------------------------------------------------


def _bad(raw: str, reason: str, message: str) -> _Phone:
    return _Phone(raw, "", reason, message)


def _lost_digits(raw: str) -> _Phone:
    return _bad(
        raw,
        Reason.LOST_DIGITS,
        f"{_quote(raw)} lost its digits to scientific notation in Excel; "
        "format the column as Text in the source and export it again",
    )


def _not_whole(raw: str) -> _Phone:
    return _bad(
        raw,
        Reason.NOT_WHOLE,
        f"{_quote(raw)} is a number with decimals, not a phone number; check the cell in the source",
    )


def _judge_phone_cell(value: CellValue, region: _Region, options: ValidateOptions) -> list[_Phone]:
    """The verdicts on the numbers of one cell (at least one)."""
    raw = format_cell(value)
    if value is None or not raw.strip():
        return [_bad(raw, Reason.MISSING_PHONE, MISSING_PHONE_MESSAGE)]
    if isinstance(value, bool):
        return [
            _bad(
                raw, Reason.NOT_A_NUMBER, f"{_quote(raw)} is not a phone number; write it as digits"
            )
        ]
    if isinstance(value, int | float):
        return [_judge_numeric(value, raw, region, options)]
    text = _unquoted(value.strip())
    if (
        region.fast is not None
        and _CLEAN_TEXT.fullmatch(text)
        and ("-" not in text or not _DATE.fullmatch(text))
    ):
        # what the rules below come to for such text, without their cost
        return [_judge_digits(text, raw, region, options, clean=True)]
    if _SCIENTIFIC.fullmatch(text):
        return [_lost_digits(raw)]
    float_text = _FLOAT_TEXT.fullmatch(text)
    if float_text is not None:
        whole, mark, fraction = float_text.groups()
        if fraction.strip("0") == "":
            return [_judge_digits(whole, raw, region, options)]
        if mark == "." or len(fraction) <= 2:
            return [_not_whole(raw)]
    if _DATE.fullmatch(text):
        return [_a_date(raw)]
    if _COMMA_THOUSANDS.fullmatch(text):
        return [_judge_digits(text.replace(",", ""), raw, region, options)]
    if not _HAS_DIGIT.search(text):
        return [_not_a_number(raw)]
    pieces = [piece.strip() for piece in _SEPARATORS.split(text)]
    pieces = [piece for piece in pieces if piece]
    if len(pieces) == 1:
        return [_judge_piece(pieces[0], raw, region, options)]
    return [_judge_piece(piece, piece, region, options) for piece in pieces]


def _unquoted(text: str) -> str:
    """Drop the one leading ' that our reports (and Excel users) put before + - = @ cells.

    errors.csv writes `'+57 319 123 4567` so that no spreadsheet runs it as a formula; the
    same file must import again as it is.
    """
    return text[1:].lstrip() if text.startswith("'") else text


def _judge_numeric(value: float, raw: str, region: _Region, options: ValidateOptions) -> _Phone:
    if isinstance(value, float):
        if not math.isfinite(value):
            return _not_a_number(raw)
        if abs(value) >= _TRUSTED_FLOAT_LIMIT:
            return _lost_digits(raw)
        if not value.is_integer():
            return _not_whole(raw)
        value = int(value)
    if value < 0:
        return _bad(
            raw,
            Reason.NOT_A_NUMBER,
            f"{_quote(raw)} is a negative number, not a phone number; check the cell in the source",
        )
    if value >= _HUGE:
        return _bad(raw, Reason.TOO_LONG, f"{_quote(raw)} is too long for a {region.code} number")
    return _judge_digits(str(value), raw, region, options, clean=True)


def _not_a_number(raw: str) -> _Phone:
    return _bad(
        raw,
        Reason.NOT_A_NUMBER,
        f"{_quote(raw)} is not a phone number; write only the digits, with - ( ) . spaces "
        "or a leading + if you like",
    )


def _a_date(raw: str) -> _Phone:
    return _bad(
        raw,
        Reason.NOT_A_NUMBER,
        f"{_quote(raw)} is a date, not a phone number; check that the phone column is the right "
        "one (--phone-column)",
    )


def _judge_piece(piece: str, raw: str, region: _Region, options: ValidateOptions) -> _Phone:
    """One number of a text cell: its shape first, then phonenumbers."""
    if _SCIENTIFIC.fullmatch(piece):
        return _lost_digits(raw)
    float_text = _FLOAT_TEXT.fullmatch(piece)
    if float_text is not None:
        whole, _mark, fraction = float_text.groups()
        if fraction.strip("0"):
            return _not_whole(raw)
        return _judge_digits(whole, raw, region, options)
    if _DATE.fullmatch(piece):
        return _a_date(raw)
    extension = ""
    found = _EXTENSION.search(piece)
    if found is not None and found.start() > 0:
        extension = found.group(1)
        piece = piece[: found.start()].rstrip()
    if not _PHONE_CHARS.fullmatch(piece) or not _HAS_DIGIT.search(piece):
        return _not_a_number(raw)
    return _judge_digits(piece, raw, region, options, extension)


def _judge_digits(
    text: str,
    raw: str,
    region: _Region,
    options: ValidateOptions,
    extension: str = "",
    clean: bool = False,
) -> _Phone:
    """Parse ``text`` (digits and number punctuation only) in the region, and format it.

    ``clean``: ``text`` matches ``_CLEAN_TEXT`` (the fast path need not check it again).
    """
    if region.fast is not None:
        found = region.fast.judge(text, clean)
        if found is not None:
            return _ready(raw, found[0], region.country_code, found[1], False, options, extension)
    try:
        number = phonenumbers.parse(text, region.code)
    except NumberParseException as exc:
        return _parse_failure(exc, raw, region)
    country_code = number.country_code or 0
    where = _country_name(country_code)
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == ValidationResult.TOO_SHORT:
        return _bad(raw, Reason.TOO_SHORT, digits_message(Reason.TOO_SHORT, _quote(raw), where))
    if possible == ValidationResult.TOO_LONG:
        return _bad(raw, Reason.TOO_LONG, digits_message(Reason.TOO_LONG, _quote(raw), where))
    if possible != ValidationResult.IS_POSSIBLE or not phonenumbers.is_valid_number(number):
        return _bad(
            raw,
            Reason.INVALID_NUMBER,
            digits_message(Reason.INVALID_NUMBER, _quote(raw), where) + _idd_hint(text, region),
        )
    foreign = country_code != region.country_code
    if foreign and not options.allow_foreign:
        return _bad(
            raw,
            Reason.FOREIGN_NUMBER,
            f"{_quote(raw)} is a {where} number, not {region.code}; add --allow-foreign to send it"
            + _idd_hint(text, region),
        )
    national: str = phonenumbers.national_significant_number(number)
    number_type: int = phonenumbers.number_type(number)
    return _ready(raw, national, country_code, number_type, foreign, options, extension)


def _ready(
    raw: str,
    national: str,
    country_code: int,
    number_type: int,
    foreign: bool,
    options: ValidateOptions,
    extension: str,
) -> _Phone:
    """The verdict on a valid number: the telephone sent and the message that says what it is."""
    telephone = _telephone(national, country_code, options, foreign)
    dropped = f" (extension {extension} not sent)" if extension else ""
    described = _described(country_code, number_type, foreign)
    return _Phone(raw, telephone, None, f"{described}; sent as {telephone}{dropped}")


@cache
def _described(country_code: int, number_type: int, foreign: bool) -> str:
    """``valid CO mobile number``: what a valid number is, for its message."""
    where = _country_name(country_code)
    kind = _TYPE_NAMES.get(number_type, "")
    described = f"valid {where} {kind} number" if kind else f"valid {where} number"
    if foreign:
        described += " (foreign, allowed by --allow-foreign)"
    return described


def _idd_hint(text: str, region: _Region) -> str:
    """A hint for '0057 ...': in CO, 005/007/009 are carriers' international prefixes."""
    digits = "".join(ch for ch in text if ch.isdigit())
    code = str(region.country_code)
    if digits.startswith("00" + code):
        return f" (if 00{code} was meant as the country code, write +{code} instead)"
    return ""


def _parse_failure(exc: NumberParseException, raw: str, region: _Region) -> _Phone:
    too_short = (NumberParseException.TOO_SHORT_NSN, NumberParseException.TOO_SHORT_AFTER_IDD)
    if exc.error_type in too_short:
        return _bad(raw, Reason.TOO_SHORT, f"{_quote(raw)} is too short for a {region.code} number")
    if exc.error_type == NumberParseException.TOO_LONG:
        return _bad(raw, Reason.TOO_LONG, f"{_quote(raw)} is too long for a {region.code} number")
    if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
        return _bad(
            raw,
            Reason.INVALID_NUMBER,
            f"{_quote(raw)} does not start with a known country code; check the digits after +",
        )
    return _not_a_number(raw)


@cache
def _country_name(country_code: int) -> str:
    """``CO`` for 57; ``+800`` for non-geographic codes, which have no region."""
    code: str = phonenumbers.region_code_for_country_code(country_code)
    if code in ("001", "ZZ"):
        return f"+{country_code}"
    return code


def _telephone(national: str, country_code: int, options: ValidateOptions, foreign: bool) -> str:
    if options.form is NumberForm.E164:
        return f"+{country_code}{national}"
    if options.form is NumberForm.INTERNATIONAL or foreign:
        return f"{options.dial_prefix}{country_code}{national}"
    return f"{options.dial_prefix}{national}"


# --- days -----------------------------------------------------------------------------------


def _judge_days(value: CellValue, raw: str, options: ValidateOptions) -> _Days:
    """The days_block of a row: a whole number of days from 1 to ``options.max_days``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if options.default_days is not None:
            return _Days(
                options.default_days, None, f"days_block {options.default_days} from --default-days"
            )
        return _Days(
            None, Reason.MISSING_DAYS, "days_block is empty; fill it in or give --default-days"
        )
    not_a_number = _Days(
        None,
        Reason.DAYS_NOT_A_NUMBER,
        f"days_block {_quote(raw)} is not a number of days; write it as digits, such as 15",
    )
    if isinstance(value, bool):
        return not_a_number
    if isinstance(value, str):
        return _days_from_text(_unquoted(value.strip()), raw, options, not_a_number)
    if isinstance(value, float):
        if not math.isfinite(value):
            return not_a_number
        if value < 0:
            return _days_negative(raw, options)
        if not value.is_integer():
            return _days_fractional(raw)
        value = int(value)
    return _days_from_int(value, raw, options)


def _days_from_text(text: str, raw: str, options: ValidateOptions, not_a_number: _Days) -> _Days:
    if _DAYS_THOUSANDS.fullmatch(text):
        return _Days(
            None,
            Reason.DAYS_NOT_A_NUMBER,
            f"days_block {_quote(raw)} could have a decimal or a thousands separator; "
            "write the days as digits only, such as 15",
        )
    found = _DAYS_TEXT.fullmatch(text)
    if found is None:
        return not_a_number
    sign, whole, _mark, fraction = found.groups()
    whole = whole.lstrip("0") or "0"
    fractional = bool(fraction and fraction.strip("0"))
    if sign == "-" and (whole != "0" or fractional):
        return _days_negative(raw, options)
    if fractional:
        return _days_fractional(raw)
    if len(whole) > len(str(_HUGE)):
        return _days_too_large(_quote(raw), options)
    return _days_from_int(int(whole), raw, options)


def _days_from_int(days: int, raw: str, options: ValidateOptions) -> _Days:
    if days < 0:
        return _days_negative(raw, options)
    if days == 0:
        return _Days(
            None,
            Reason.DAYS_ZERO,
            f"days_block {_quote(raw)} is zero; give a whole number of days from 1 to {options.max_days}",
        )
    if days > options.max_days:
        return _days_too_large(str(days) if days < _HUGE else _quote(raw), options)
    return _Days(days, None, "")


def _days_too_large(shown: str, options: ValidateOptions) -> _Days:
    message = f"days_block {shown} is above --max-days {options.max_days}"
    return _Days(None, Reason.DAYS_TOO_LARGE, message)


def _days_negative(raw: str, options: ValidateOptions) -> _Days:
    return _Days(
        None,
        Reason.DAYS_NEGATIVE,
        f"days_block {_quote(raw)} is negative; give a whole number of days from 1 to {options.max_days}",
    )


def _days_fractional(raw: str) -> _Days:
    return _Days(
        None, Reason.DAYS_FRACTIONAL, f"days_block {_quote(raw)} is not a whole number of days"
    )
