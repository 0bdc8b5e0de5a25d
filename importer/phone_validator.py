"""Judge a phone cell: the numbers it holds, each valid (with the telephone to send) or not.

``_judge_phone_cell`` applies the rules of ``importer.validator``'s docstring, in order, and
gives one verdict (``_Phone``) per number of the cell; ``_quick`` is its shortcut for a cell
that is one clean valid number (through ``importer.fastpath``), and ``_remembered`` keeps the
verdicts on cells that repeat. ``importer.validator`` turns the verdicts into ``Outcome``s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

from importer.config import NumberForm, ValidateOptions
from importer.days_validator import _HUGE, _TRUSTED_FLOAT_LIMIT, _quote, _unquoted, format_cell
from importer.fastpath import LONGEST_INPUT, FastPath
from importer.model import CellValue, Reason

__all__ = ["MISSING_PHONE_MESSAGE", "digits_message"]

_SCIENTIFIC = re.compile(r"[+-]?\s*\d+(?:[.,]\d*)?\s*[eE]\s*[+-]?\s*\d+")
_FLOAT_TEXT = re.compile(r"(\+?\d+)([.,])(\d+)")
_COMMA_THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3}){2,}")
_SEPARATORS = re.compile(r"[/;,|\r\n]")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2}(?:\d{2})?")
_EXTENSION = re.compile(r"(?:ext(?:ensi[oó]n|n)?\.?|anexo|x|#)\s*:?\s*(\d{1,7})\s*$", re.IGNORECASE)
_PHONE_CHARS = re.compile(r"\+?[0-9\s().\-\u2010-\u2015]+")
_HAS_DIGIT = re.compile(r"[0-9]")
_CLEAN_TEXT = re.compile(r"\+?[ ()\-]*[0-9][0-9 ()\-]*")
"""A cell no earlier rule can catch but a date: only digits, spaces, ( ) - and a leading +."""
_WHOLE_FLOAT_TEXT = re.compile(r"(\+?[0-9]+)[.,]0+")
"""A float written as text with a zero fraction (``3191234567.0``): its integer part counts."""
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


def digits_message(reason: str, quoted: str, where: str) -> str:
    """The message of a number phonenumbers finds too short, too long or not valid.

    >>> digits_message(Reason.TOO_SHORT, "'30567'", "CO")
    "'30567' is too short for a CO number"
    """
    return _DIGITS_MESSAGES[reason].format(quoted=quoted, where=where)


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


@cache
def _region(code: str, fast: bool = True) -> _Region:
    return _Region(
        code, phonenumbers.country_code_for_region(code), FastPath.build(code) if fast else None
    )


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
