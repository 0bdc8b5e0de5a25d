"""The validator's fast path: what phonenumbers would say of a clean number, without parsing.

Most phone cells are clean numbers (``3191234567``, ``+57 319 123 4567``, ``3191234567.0``). For
them ``FastPath`` finds what ``phonenumbers.parse`` + ``is_possible_number`` +
``is_valid_number`` + ``number_type`` would, for one region, without calling them. Everything
is derived from phonenumbers' own metadata for the region (its type patterns, possible lengths,
country code, international and national prefixes), built once per region.

It only ever answers "valid, this national number, this type". Whenever it is unsure (an IDD, a
national prefix, another country code, any other character, a region that shares its country
code) it answers None and the validator's full parse decides, as it does for every invalid
number. Regions whose metadata cannot be combined get no fast path at all.

The proof that both ways agree is differential: ``tests/test_validator_fastpath.py`` compares
every outcome field of ``validator._validate(..., fast=True)`` and ``fast=False``, and
``python -m benchmarks.bench_validator --differential`` does so on the whole 1M-row set.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import (
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberDesc,
    PhoneNumberType,
    ValidationResult,
)

__all__ = ["LONGEST_INPUT", "FastPath", "FastPatterns", "TypeBranches"]

_FAST_TEXT = re.compile(r"\+?[0-9 ().\-]+")
"""What the fast path reads: phonenumbers drops these marks, keeping a leading + only."""

_TYPE_ORDER = (
    ("premium_rate", PhoneNumberType.PREMIUM_RATE),
    ("toll_free", PhoneNumberType.TOLL_FREE),
    ("shared_cost", PhoneNumberType.SHARED_COST),
    ("voip", PhoneNumberType.VOIP),
    ("personal_number", PhoneNumberType.PERSONAL_NUMBER),
    ("pager", PhoneNumberType.PAGER),
    ("uan", PhoneNumberType.UAN),
    ("voicemail", PhoneNumberType.VOICEMAIL),
)
"""The types phonenumbers' ``number_type`` tries before fixed line and mobile, in its order."""
LONGEST_INPUT = 250
"""phonenumbers refuses longer text before reading it (``_MAX_INPUT_STRING_LENGTH``)."""
_NSN_LENGTHS = range(2, 18)
"""The national number lengths phonenumbers accepts at all (``_MIN/_MAX_LENGTH_FOR_NSN``)."""


@dataclass(frozen=True, slots=True)
class TypeBranches:
    """Which type a national number of one length is: it must fully match ``overall``, then the
    first of ``branches`` (pattern, PhoneNumberType) that it fully matches names its type."""

    overall: str
    branches: tuple[tuple[tuple[str, ...], int], ...]
    """(patterns the number must all fully match, PhoneNumberType)."""


@dataclass(frozen=True, slots=True)
class FastPatterns:
    """The regular expressions ``FastPath`` is made of, as text, for another regex engine.

    ``importer.columnar_validator`` runs them over whole columns; ``FastPath`` compiles the same
    text with ``re``. ``plain``, ``idd`` and ``national_prefix`` are matched at the start of the
    digits (``re.match``), ``general`` and the branches against the whole of them.
    """

    code: str
    plus: bool
    """A + followed by ``code`` is read as this country's code (see ``FastPath._national``)."""
    plain: str
    idd: str | None
    national_prefix: str | None
    general: str
    too_short: frozenset[int]
    """The digit counts phonenumbers finds TOO_SHORT for this country code."""
    too_long: frozenset[int]
    """The digit counts phonenumbers finds TOO_LONG for this country code."""
    types: dict[int, TypeBranches]
    """By national number length: only the lengths phonenumbers finds possible."""


class FastPath:
    """What phonenumbers concludes about a plain number in one region, without parsing it.

    Everything comes from phonenumbers' metadata for the region; the steps are those of its
    ``parse`` (international prefix, country code, national prefix), ``is_possible_number``,
    ``is_valid_number`` and ``number_type``, for text that holds only digits and the marks
    parse drops. ``judge`` answers only for a valid number of the region, else None.
    """

    __slots__ = (
        "_code",
        "_general",
        "_idd",
        "_lengths",
        "_national_prefix",
        "_plain",
        "_plus",
        "_types",
        "patterns",
    )

    def __init__(self, code: int, metadata: PhoneMetadata, general: PhoneNumberDesc) -> None:
        self._code = str(code)
        # With a +, parse takes the shortest known country code: ours, unless a prefix of it is one.
        self._plus = not any(
            int(self._code[:size]) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
            for size in range(1, len(self._code))
        )
        idd = metadata.international_prefix
        self._idd = None if idd is None else re.compile(idd).match
        prefix = metadata.national_prefix_for_parsing
        self._national_prefix = re.compile(prefix).match if prefix else None
        # Digits that start with none of these are their own national number (see _national).
        starts = [f"(?:{idd})"] if idd is not None else []
        starts += [self._code, "0"] + ([f"(?:{prefix})"] if prefix else [])
        plain = "|".join(starts)
        self._plain = re.compile(plain).match
        self._general = re.compile(general.national_number_pattern or "").fullmatch
        # phonenumbers' length verdict depends on the length alone: ask it once for each.
        self._lengths = [ValidationResult.TOO_SHORT] + [
            phonenumbers.is_possible_number_with_reason(
                PhoneNumber(country_code=code, national_number=int("1" * size))
            )
            for size in range(1, LONGEST_INPUT + 1)
        ]
        branches = {
            size: _type_branches(metadata, general, size)
            for size in _NSN_LENGTHS
            if self._lengths[size] == ValidationResult.IS_POSSIBLE
        }
        self._types = {size: _type_pattern(found) for size, found in branches.items()}
        self.patterns = FastPatterns(
            code=self._code,
            plus=self._plus,
            plain=plain,
            idd=idd,
            national_prefix=prefix or None,
            general=general.national_number_pattern or "",
            too_short=frozenset(
                size
                for size, verdict in enumerate(self._lengths)
                if verdict == ValidationResult.TOO_SHORT
            ),
            too_long=frozenset(
                size
                for size, verdict in enumerate(self._lengths)
                if verdict == ValidationResult.TOO_LONG
            ),
            types={size: found for size, found in branches.items() if found is not None},
        )

    @staticmethod
    def build(region: str) -> FastPath | None:
        """The fast path of ``region``; None where a valid number could be named another region."""
        metadata = PhoneMetadata.metadata_for_region(region)
        if metadata is None or metadata.general_desc is None:
            return None
        if not metadata.general_desc.national_number_pattern:
            return None
        code = metadata.country_code
        if code is None:
            return None
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
        # region_code_for_number tries the regions of a shared code in order: the first one
        # without leading digits is named for every number valid in it.
        if not regions or regions[0] != region or metadata.leading_digits is not None:
            return None
        try:
            return FastPath(code, metadata, metadata.general_desc)
        except (re.error, ValueError):  # a pattern that cannot be combined: parse it all
            return None

    def judge(self, text: str, clean: bool = False) -> tuple[str, int] | None:
        """(national significant number, PhoneNumberType) of a valid number, else None.

        ``clean``: the caller knows ``text`` matches the validator's ``_CLEAN_TEXT`` (narrower
        than ``_FAST_TEXT``).
        """
        if len(text) > LONGEST_INPUT or not (clean or _FAST_TEXT.fullmatch(text)):
            return None
        if text.isdigit():  # ASCII digits only, by the pattern
            return self.judge_digits(text, False)
        digits = text.replace(" ", "").replace("-", "").replace("(", "").replace(")", "")
        return self.judge_digits(digits.replace(".", "").replace("+", ""), text[0] == "+")

    def judge_digits(self, digits: str, plus: bool) -> tuple[str, int] | None:
        """``judge`` of ASCII digits, written after a + or not."""
        if not 3 <= len(digits) <= LONGEST_INPUT:  # below 3, parse might see no number at all
            return None
        if plus or self._plain(digits):
            national = self._national(digits, plus)
            if national is None:
                return None
        else:
            national = digits
        types = self._types.get(len(national))
        if types is None:
            return None
        found = types[0](national)
        if found is None or found.lastindex is None:
            return None
        return national, types[1][found.lastindex]

    def _national(self, digits: str, plus: bool) -> str | None:
        """The national number parse would find, or None where it might find another."""
        code = self._code
        prefix = self._national_prefix
        if plus:
            if not self._plus or not digits.startswith(code):
                return None
            national = digits[len(code) :]
        elif self._idd is not None and self._idd(digits):
            return None
        elif digits.startswith(code):
            rest = digits[len(code) :]
            if prefix is not None and rest and prefix(rest):
                return None  # parse would try to strip a national prefix there
            general = self._general
            if (not general(digits) and general(rest)) or (
                self._lengths[len(digits)] == ValidationResult.TOO_LONG
            ):
                national = rest
            else:
                national = digits
        else:
            national = digits
        if (prefix is not None and national and prefix(national)) or national.startswith("0"):
            return None
        return national


def _type_branches(
    metadata: PhoneMetadata, general: PhoneNumberDesc, size: int
) -> TypeBranches | None:
    """phonenumbers' ``_number_type_helper`` for national numbers of ``size``, as patterns.

    The number must match the general description, then the first type whose description
    matches names it, in phonenumbers' order: a fixed-line pattern that the mobile one matches
    too is "fixed line or mobile" (its branch needs both). A description matches when it has no
    possible lengths or ``size`` among them, and its whole pattern matches. None: no number of
    this length is valid.
    """

    def fits(desc: PhoneNumberDesc | None) -> str | None:
        if desc is None or not desc.national_number_pattern:
            return None
        if desc.possible_length and size not in desc.possible_length:
            return None
        if re.compile(desc.national_number_pattern).groups:
            raise ValueError("a capturing group would shift the group names")
        return f"(?:{desc.national_number_pattern})"

    overall = fits(general)
    branches: list[tuple[tuple[str, ...], int]] = [
        ((pattern,), kind)
        for attribute, kind in _TYPE_ORDER
        if (pattern := fits(getattr(metadata, attribute))) is not None
    ]
    fixed, mobile = fits(metadata.fixed_line), fits(metadata.mobile)
    same = metadata.same_mobile_and_fixed_line_pattern
    if fixed is not None:
        if same:
            branches.append(((fixed,), PhoneNumberType.FIXED_LINE_OR_MOBILE))
        elif mobile is not None:
            branches.append(((fixed, mobile), PhoneNumberType.FIXED_LINE_OR_MOBILE))
        if not same:
            branches.append(((fixed,), PhoneNumberType.FIXED_LINE))
    if mobile is not None and not same:
        branches.append(((mobile,), PhoneNumberType.MOBILE))
    if overall is None or not branches:
        return None
    return TypeBranches(overall, tuple(branches))


_TypePattern = tuple[Callable[[str], "re.Match[str] | None"], tuple[int, ...]]
"""A ``fullmatch`` and the PhoneNumberType of each of its groups (``lastindex`` names it)."""


def _type_pattern(found: TypeBranches | None) -> _TypePattern:
    """The branches as one ``fullmatch`` whose matching group names the type."""
    if found is None:
        return re.compile("(?!)").fullmatch, ()  # no number of this length is valid
    either = "|".join(
        "(" + "".join(f"(?={first}\\Z)" for first in patterns[:-1]) + patterns[-1] + ")"
        for patterns, _kind in found.branches
    )
    pattern = re.compile(f"(?={found.overall}\\Z)(?:{either})")
    return pattern.fullmatch, (-1, *(kind for _pattern, kind in found.branches))
