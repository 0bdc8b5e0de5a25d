"""The validator's fast path gives exactly what the full phonenumbers parse gives.

``validator._validate(rows, options, fast=False)`` is the validator before the fast path (every
number parsed by phonenumbers, no shortcut, no cache); ``fast=True`` is what ``validate`` runs.
Every outcome field must agree, for hypothesis-made numbers of several regions in every form,
and for a sample of the benchmark's mixed set (the whole 1M set: ``python -m
benchmarks.bench_validator --differential``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import phonenumbers
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from importer import validator
from importer.config import NumberForm, ValidateOptions
from importer.model import CellValue, Outcome, RawRow, Reason, Status

ROOT = Path(__file__).resolve().parent.parent
REGIONS = ("CO", "MX", "PE", "US", "BR", "DE")


def both(rows: list[RawRow], options: ValidateOptions) -> tuple[list[Outcome], list[Outcome]]:
    """The outcomes of ``rows`` by the fast path and by the full parse alone."""
    validator.check_options(options)
    return (
        list(validator._validate(rows, options, fast=True)),
        list(validator._validate(rows, options, fast=False)),
    )


def assert_same(phone: CellValue, days: CellValue, options: ValidateOptions) -> list[Outcome]:
    fast, full = both([RawRow("a.xlsx", "Hoja1", 9, phone, days)], options)
    assert fast == full, (phone, days, options)
    return fast


# --- hypothesis: numbers of several regions, in every form ------------------------------------


def _seeds(region: str) -> list[str]:
    """The national number of every example number of every type of ``region``."""
    found = []
    for kind in range(11):
        number = phonenumbers.example_number_for_type(region, kind)
        if number is not None:
            found.append(phonenumbers.national_significant_number(number))
    return found


@st.composite
def _written(draw: st.DrawFn, region: str) -> str:
    """A number of ``region`` as people write it: near an example number, in some form."""
    national = draw(st.sampled_from(_seeds(region)))
    keep = draw(st.integers(max(0, len(national) - 3), len(national)))
    size = len(national) - keep
    tail = draw(st.text("0123456789", min_size=size, max_size=size + draw(st.sampled_from([0, 0, 1]))))
    national = national[:keep] + tail  # often still valid, sometimes not
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert metadata is not None
    code = str(metadata.country_code)
    idd = {"US": "011", "MX": "00", "BR": "0014"}.get(region, "00")
    national_prefix = metadata.national_prefix or ""
    digits = draw(
        st.sampled_from(
            [
                national,
                national,
                national,
                "+" + code + national,
                "+" + code + national,
                code + national,
                idd + code + national,
                national_prefix + national,
                "+" + code + national_prefix + national,
                code + national_prefix + national,
                "9" + national,
            ]
        )
    )
    return _punctuated(draw, digits)


def _punctuated(draw: st.DrawFn, digits: str) -> str:
    """``digits`` with marks between them, as formats and people put them (or none)."""
    plus = digits.startswith("+")
    body = digits.lstrip("+")
    style = draw(st.sampled_from(["none", "none", "common", "common", "odd"]))
    if style == "none":
        marks = st.just("")
    elif style == "common":
        marks = st.sampled_from(["", "", "", " ", "-", ".", "(", ")", " (", ") "])
    else:
        marks = st.sampled_from(["", "", " ", "-", "\u00a0", "\u2013", "\t", "/", "x"])
    pieces = [ch + draw(marks) for ch in body]
    text = ("+" if plus else "") + draw(st.sampled_from(["", "", "(", " "])) + "".join(pieces)
    edges = st.sampled_from(["", "", "", "'", " "]), st.sampled_from(["", "", "", " ", "."])
    return draw(edges[0]) + text + draw(edges[1])


_formatted = st.builds(
    lambda number, fmt: phonenumbers.format_number(number, fmt),
    st.sampled_from(
        [
            n
            for r in REGIONS
            for k in range(11)
            if (n := phonenumbers.example_number_for_type(r, k)) is not None
        ]
    ),
    st.sampled_from(
        [
            phonenumbers.PhoneNumberFormat.NATIONAL,
            phonenumbers.PhoneNumberFormat.INTERNATIONAL,
            phonenumbers.PhoneNumberFormat.E164,
            phonenumbers.PhoneNumberFormat.RFC3966,
        ]
    ),
)
_raw_digits = st.builds(
    lambda prefix, digits: prefix + digits,
    st.sampled_from(["", "", "+", "+57", "57", "0", "00", "0057", "+1", "1", "+52", "52", "055", "+55", "+49", "049"]),
    st.text("0123456789", min_size=1, max_size=16),
)
_text_cells = st.one_of(
    st.sampled_from(REGIONS).flatmap(_written),
    _formatted,
    _raw_digits,
    st.text("0123456789 +-.()x#,;/", max_size=24),
)
_numeric_cells = st.one_of(
    st.builds(int, _raw_digits.filter(lambda d: d.isdigit())),
    st.builds(lambda d: float(int(d)), _raw_digits.filter(lambda d: d.isdigit() and len(d) < 16)),
    st.builds(lambda d: d + ".0", _raw_digits),
    st.integers(-(10**19), 10**19),
    st.floats(allow_nan=True, allow_infinity=True),
)
_days = st.one_of(
    st.sampled_from(["30", " 90 ", "365", "15.0", "1.000", "0", "-3", "", None, 30, 30.0, -0.0, 0.0]),
    st.integers(-5, 5000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
)


@st.composite
def _options(draw: st.DrawFn) -> ValidateOptions:
    form = draw(st.sampled_from(list(NumberForm)))
    prefix = "" if form is NumberForm.E164 else draw(st.sampled_from(["", "9", "0057"]))
    return ValidateOptions(
        region=draw(st.sampled_from(REGIONS + ("co", "CA", "AR"))),
        form=form,
        dial_prefix=prefix,
        allow_foreign=draw(st.booleans()),
        default_days=draw(st.sampled_from([None, 30])),
        max_days=draw(st.sampled_from([3650, 90])),
    )


@st.composite
def _phones_for(draw: st.DrawFn, options: ValidateOptions) -> CellValue:
    """Mostly numbers of the region of ``options`` (those the fast path may answer)."""
    region = options.region.upper()
    if region in REGIONS and draw(st.booleans()):
        written = draw(_written(region))
        if draw(st.integers(0, 3)) == 0 and written.isdigit() and not written.startswith("0"):
            cells: list[CellValue] = [int(written), float(int(written)), written + ".0"]
            return draw(st.sampled_from(cells))
        return written
    phone: CellValue = draw(st.one_of(_text_cells, _numeric_cells))
    return phone


_cases = _options().flatmap(lambda o: st.tuples(_phones_for(o), _days, st.just(o)))


@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cases)
@example(case=("+57 319 123 4567", "30", ValidateOptions()))
@example(case=("0057 310 987 6543", "30", ValidateOptions()))
@example(case=("03191234567", "30", ValidateOptions()))
@example(case=("2024-01-15", "30", ValidateOptions()))
@example(case=("12025550123", 30, ValidateOptions(region="US")))
@example(case=("030 123456", 30, ValidateOptions(region="DE")))
@example(case=("+49 (0) 30 123456", 30, ValidateOptions(region="DE")))
@example(case=(1.0e14, -0.0, ValidateOptions()))
def test_fast_and_full_agree_on_every_form(
    case: tuple[CellValue, CellValue, ValidateOptions],
) -> None:
    assert_same(*case)


@settings(max_examples=150, deadline=None)
@given(
    phones=st.lists(_text_cells, min_size=1, max_size=4),
    separator=st.sampled_from(["/", ";", "|", "\n", " / "]),
    options=_options(),
)
def test_fast_and_full_agree_on_cells_of_several_numbers(
    phones: list[str], separator: str, options: ValidateOptions
) -> None:
    assert_same(separator.join(phones), "30", options)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.tuples(_text_cells | _numeric_cells, _days), min_size=2, max_size=12))
def test_many_rows_agree_in_order_with_the_days_remembered(
    rows: list[tuple[CellValue, CellValue]],
) -> None:
    """Days cells repeat from row to row: what the fast run remembers must not leak across."""
    raw = [RawRow("b.csv", "", n, phone, days) for n, (phone, days) in enumerate(rows, start=2)]
    fast, full = both(raw, ValidateOptions(default_days=7))
    assert fast == full


# --- the benchmark's mixed set -----------------------------------------------------------------


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT))
        from benchmarks import bench_validator

        yield bench_validator


def test_a_20k_sample_of_the_mixed_set_has_zero_disagreements(bench: ModuleType) -> None:
    rows = bench.mixed_rows(20_000, seed=5)
    assert bench.disagreements(rows, ValidateOptions()) == []
    counts: dict[str, int] = {}
    for outcome in bench.judge(rows, ValidateOptions(), True):
        counts[outcome.reason] = counts.get(outcome.reason, 0) + 1
    assert counts[Reason.VALID] > 19_000 and counts[Reason.INVALID_NUMBER] > 50  # both kinds seen


def test_the_other_option_sets_on_a_3k_sample(bench: ModuleType) -> None:
    rows = bench.mixed_rows(3_000, seed=6)
    for options in bench.OPTION_SETS[1:]:
        assert bench.disagreements(rows, options) == [], options


# --- the fast path is really taken, and only where it may be -----------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "3191234567",
        "319 123 4567",
        "+57 319 123 4567",
        "(319) 123-4567",
        "57-319-1234567",
        "573191234567",
        "601 234 5678",
        3191234567,
        3191234567.0,
        "3191234567.0",
        " 3191234567 ",
    ],
)
def test_the_common_clean_forms_never_call_the_full_parse(
    phone: CellValue, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = assert_same(phone, "30", ValidateOptions())
    assert expected[0].status is Status.READY

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the full parse ran")

    monkeypatch.setattr(phonenumbers, "parse", refuse)
    assert list(validator.validate([RawRow("a.xlsx", "Hoja1", 9, phone, "30")], ValidateOptions())) == expected


@pytest.mark.parametrize(
    ("phone", "message"),
    [
        ("3191234567", "valid CO mobile number; sent as 3191234567"),
        ("601 234 5678", "valid CO fixed-line number; sent as 6012345678"),
        (3001234567.0, "valid CO mobile number; sent as 3001234567"),
        ("+57 1 800 123 4567", "valid CO toll-free number; sent as 18001234567"),
    ],
)
def test_fast_messages_name_the_type_as_the_full_parse_does(phone: CellValue, message: str) -> None:
    (outcome,) = assert_same(phone, "30", ValidateOptions())
    assert outcome.message == message


def test_regions_sharing_a_code_other_than_the_first_always_parse() -> None:
    """region_code_for_number could name another region of +1 or +7: no fast path there."""
    assert validator._FastPath.build("US") is not None
    assert validator._FastPath.build("CA") is None
    assert validator._FastPath.build("KZ") is None
    assert validator._region("CO", False).fast is None


def test_the_type_patterns_agree_with_number_type_in_every_region() -> None:
    """Every example number of every type of every region the fast path serves."""
    answered = 0
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        fast = validator._FastPath.build(region)
        if fast is None:
            continue
        for kind in range(12):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            national = phonenumbers.national_significant_number(number)
            if national.startswith("0"):
                continue  # never answered by the fast path (an Italian leading zero)
            valid = (
                phonenumbers.is_valid_number(number)
                and phonenumbers.region_code_for_number(number) == region
                and phonenumbers.is_possible_number_with_reason(number)
                == phonenumbers.ValidationResult.IS_POSSIBLE
            )
            expected = (national, phonenumbers.number_type(number)) if valid else None
            for digits, plus in ((national, False), (str(number.country_code) + national, True)):
                found = fast.judge_digits(digits, plus)
                if found is not None or region in REGIONS:  # it may pass a number on to parse
                    assert found == expected, (region, digits, plus)
                    answered += found is not None
    assert answered > 2000


def test_a_wrong_fast_path_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison really compares: a fast path that misnames the type disagrees."""
    real = validator._FastPath.judge_digits

    def misnamed(self: validator._FastPath, digits: str, plus: bool) -> tuple[str, int] | None:
        found = real(self, digits, plus)
        return None if found is None else (found[0], phonenumbers.PhoneNumberType.FIXED_LINE)

    monkeypatch.setattr(validator._FastPath, "judge_digits", misnamed)
    fast, full = both([RawRow("a", "", 2, "3191234567", "30")], ValidateOptions())
    assert fast[0].message == "valid CO fixed-line number; sent as 3191234567"
    assert full[0].message == "valid CO mobile number; sent as 3191234567"
