"""Judge a days cell, and write any cell as a person reads it (in lines and messages).

``judge_days`` gives the ``days_block`` of a row, or the reason it cannot be used (the rules are
in ``importer.validator``'s docstring); ``format_cell`` writes a cell for ``raw_phone`` and
``raw_days``, and ``_quote`` quotes one in a message. ``importer.phone_validator`` uses the
latter two too.
"""

from __future__ import annotations

import math
import re
import sys
from typing import NamedTuple

from importer.config import ValidateOptions
from importer.model import CellValue, Reason

__all__ = ["format_cell", "judge_days"]

_TRUSTED_FLOAT_LIMIT = 1e15
"""A float this large has 16+ digits; Excel keeps 15 significant digits, so some are lost."""

_HUGE = 10**18
"""Larger than any phone number or days value; never turned into text or compared as such."""
_QUOTE_LIMIT = 80
"""Messages quote at most this many characters of a cell."""

_DAYS_TEXT = re.compile(r"([+-]?)(\d+)(?:([.,])(\d+))?")
_DAYS_THOUSANDS = re.compile(r"\d{1,3}[.,]\d{3}")


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


class _Days(NamedTuple):
    """The verdict on a days cell: ``reason`` is None when ``value`` is usable."""

    value: int | None
    reason: str | None
    message: str


def _quote(raw: str) -> str:
    """``raw`` quoted for a message; a huge cell is cut (``raw_phone`` keeps all of it)."""
    if len(raw) > _QUOTE_LIMIT:
        return repr(raw[: _QUOTE_LIMIT - 3] + "...")
    return repr(raw)


def _unquoted(text: str) -> str:
    """Drop the one leading ' that our reports (and Excel users) put before + - = @ cells.

    errors.csv writes `'+57 319 123 4567` so that no spreadsheet runs it as a formula; the
    same file must import again as it is.
    """
    return text[1:].lstrip() if text.startswith("'") else text


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
