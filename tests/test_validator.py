"""The validator: one outcome per number, exact reasons and messages, the telephone sent."""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections.abc import Iterator

import phonenumbers
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from importer.config import NumberForm, ValidateOptions
from importer.errors import UsageError
from importer.model import CellValue, Outcome, RawRow, Reason, Status
from importer.validator import check_options, format_cell, validate

CO = ValidateOptions()


def judge(phone: CellValue, days: CellValue = 15, options: ValidateOptions = CO) -> list[Outcome]:
    return list(validate([RawRow("in.csv", "Hoja1", 7, phone, days)], options))


def one(phone: CellValue, days: CellValue = 15, options: ValidateOptions = CO) -> Outcome:
    outcomes = judge(phone, days, options)
    assert len(outcomes) == 1, outcomes
    return outcomes[0]


# --- a valid line -----------------------------------------------------------------------------


def test_a_valid_line_keeps_its_place_and_says_what_it_is() -> None:
    assert judge("319 123 4567", "15") == [
        Outcome(
            source_file="in.csv",
            sheet="Hoja1",
            row=7,
            part=1,
            raw_phone="319 123 4567",
            raw_days="15",
            telephone="3191234567",
            days_block=15,
            status=Status.READY,
            reason=Reason.VALID,
            message="valid CO mobile number; sent as 3191234567",
            batch=None,
        )
    ]


def test_validate_refuses_bad_options_before_reading_a_row() -> None:
    def rows() -> Iterator[RawRow]:
        raise AssertionError("a row was read")
        yield  # pragma: no cover

    with pytest.raises(UsageError, match=r"^--region ZZ is not a region code"):
        validate(rows(), ValidateOptions(region="ZZ"))


def test_validate_streams_rows_as_they_come() -> None:
    def endless() -> Iterator[RawRow]:
        for row in itertools.count(2):
            yield RawRow("big.csv", "", row, "3191234567", 15)

    first = list(itertools.islice(validate(endless(), CO), 3))
    assert [outcome.row for outcome in first] == [2, 3, 4]


# --- phone reasons, exact messages --------------------------------------------------------------

NOT_A_NUMBER_FIX = "write only the digits, with - ( ) . spaces or a leading + if you like"
LOST = "lost its digits to scientific notation in Excel; format the column as Text in the source and export it again"


@pytest.mark.parametrize(
    ("phone", "reason", "message"),
    [
        (None, Reason.MISSING_PHONE, "the phone cell is empty; fill it in or delete the row"),
        ("   ", Reason.MISSING_PHONE, "the phone cell is empty; fill it in or delete the row"),
        ("no tiene", Reason.NOT_A_NUMBER, f"'no tiene' is not a phone number; {NOT_A_NUMBER_FIX}"),
        ("N/A", Reason.NOT_A_NUMBER, f"'N/A' is not a phone number; {NOT_A_NUMBER_FIX}"),
        ("#N/A", Reason.NOT_A_NUMBER, f"'#N/A' is not a phone number; {NOT_A_NUMBER_FIX}"),
        ("abc123", Reason.NOT_A_NUMBER, f"'abc123' is not a phone number; {NOT_A_NUMBER_FIX}"),
        (
            "tel 3191234567",
            Reason.NOT_A_NUMBER,
            f"'tel 3191234567' is not a phone number; {NOT_A_NUMBER_FIX}",
        ),
        (
            "319*123*4567",
            Reason.NOT_A_NUMBER,
            f"'319*123*4567' is not a phone number; {NOT_A_NUMBER_FIX}",
        ),
        (
            "3191+234567",
            Reason.NOT_A_NUMBER,
            f"'3191+234567' is not a phone number; {NOT_A_NUMBER_FIX}",
        ),
        (True, Reason.NOT_A_NUMBER, "'TRUE' is not a phone number; write it as digits"),
        (
            "2024-01-15",
            Reason.NOT_A_NUMBER,
            "'2024-01-15' is a date, not a phone number; check that the phone column is the right one (--phone-column)",
        ),
        (
            -3191234567,
            Reason.NOT_A_NUMBER,
            "'-3191234567' is a negative number, not a phone number; check the cell in the source",
        ),
        ("3,19123E+09", Reason.LOST_DIGITS, f"'3,19123E+09' {LOST}"),
        ("3.19123E+09", Reason.LOST_DIGITS, f"'3.19123E+09' {LOST}"),
        ("3.19e9", Reason.LOST_DIGITS, f"'3.19e9' {LOST}"),
        (" 3,19 E+09 ", Reason.LOST_DIGITS, f"' 3,19 E+09 ' {LOST}"),
        ("3E9", Reason.LOST_DIGITS, f"'3E9' {LOST}"),
        (1.2345678901234567e18, Reason.LOST_DIGITS, f"'1.2345678901234568e+18' {LOST}"),
        (1e15, Reason.LOST_DIGITS, f"'1000000000000000.0' {LOST}"),
        (
            3191234567.5,
            Reason.NOT_WHOLE,
            "'3191234567.5' is a number with decimals, not a phone number; check the cell in the source",
        ),
        (
            "3191234567.5",
            Reason.NOT_WHOLE,
            "'3191234567.5' is a number with decimals, not a phone number; check the cell in the source",
        ),
        (
            "3191234567,25",
            Reason.NOT_WHOLE,
            "'3191234567,25' is a number with decimals, not a phone number; check the cell in the source",
        ),
        (
            # a single dot is a decimal point, never punctuation: 319123456.7 is not sent
            "319123456.7",
            Reason.NOT_WHOLE,
            "'319123456.7' is a number with decimals, not a phone number; check the cell in the source",
        ),
        ("319123", Reason.TOO_SHORT, "'319123' is too short for a CO number"),
        ("+57 0", Reason.TOO_SHORT, "'+57 0' is too short for a CO number"),
        ("31912345678901", Reason.TOO_LONG, "'31912345678901' is too long for a CO number"),
        ("+1 202 555", Reason.TOO_SHORT, "'+1 202 555' is too short for a US number"),
        (
            "1234567890",
            Reason.INVALID_NUMBER,
            "'1234567890' is not a valid CO number; check its digits in the source",
        ),
        (
            "93191234567",
            Reason.INVALID_NUMBER,
            "'93191234567' is not a valid CO number; check its digits in the source",
        ),
        (
            "+999 1234567",
            Reason.INVALID_NUMBER,
            "'+999 1234567' does not start with a known country code; check the digits after +",
        ),
        (
            "+1 202-555-0123",
            Reason.FOREIGN_NUMBER,
            "'+1 202-555-0123' is a US number, not CO; add --allow-foreign to send it",
        ),
        (
            "+51 912 345 678",
            Reason.FOREIGN_NUMBER,
            "'+51 912 345 678' is a PE number, not CO; add --allow-foreign to send it",
        ),
    ],
)
def test_each_phone_reason_has_its_exact_message(
    phone: CellValue, reason: str, message: str
) -> None:
    outcome = one(phone)
    assert (outcome.status, outcome.reason, outcome.message) == (Status.INVALID, reason, message)
    assert outcome.telephone == ""
    assert outcome.days_block == 15  # the days were fine; they are kept for the report
    assert outcome.raw_phone == format_cell(phone)


# --- numeric and float-looking cells ------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "raw"),
    [
        (3191234567, "3191234567"),
        (3191234567.0, "3191234567"),
        ("3191234567.0", "3191234567.0"),
        ("3191234567,00", "3191234567,00"),
        ("3191234567.000", "3191234567.000"),
        ("3,191,234,567", "3,191,234,567"),
        ("3.191.234.567", "3.191.234.567"),
        ("+57 319 123 4567", "+57 319 123 4567"),
        ("57 3191234567", "57 3191234567"),
        ("(319) 123-4567", "(319) 123-4567"),
        ("319\u00a0123\u00a04567", "319\u00a0123\u00a04567"),
        (" 3191234567 ", " 3191234567 "),
        ("3191234567;", "3191234567;"),
        ("+573191234567.0", "+573191234567.0"),
    ],
)
def test_numbers_in_every_shape_give_the_same_telephone(phone: CellValue, raw: str) -> None:
    outcome = one(phone)
    assert (outcome.status, outcome.telephone, outcome.raw_phone) == (
        Status.READY,
        "3191234567",
        raw,
    )


def test_an_extension_is_never_sent_and_the_message_says_so() -> None:
    outcome = one("(601) 234-5678 ext. 12")
    assert outcome.telephone == "6012345678"
    assert (
        outcome.message == "valid CO fixed-line number; sent as 6012345678 (extension 12 not sent)"
    )
    assert one("3191234567 x 5").message == (
        "valid CO mobile number; sent as 3191234567 (extension 5 not sent)"
    )


# --- output forms --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "prefix", "telephone"),
    [
        (NumberForm.NATIONAL, "", "3191234567"),
        (NumberForm.E164, "", "+573191234567"),
        (NumberForm.INTERNATIONAL, "", "573191234567"),
        (NumberForm.NATIONAL, "9", "93191234567"),
        (NumberForm.INTERNATIONAL, "9", "9573191234567"),
        (NumberForm.NATIONAL, "0057", "00573191234567"),
    ],
)
def test_each_form_and_dial_prefix(form: NumberForm, prefix: str, telephone: str) -> None:
    outcome = one("+57 319 123 4567", options=ValidateOptions(form=form, dial_prefix=prefix))
    assert outcome.telephone == telephone
    assert outcome.message == f"valid CO mobile number; sent as {telephone}"


@pytest.mark.parametrize(
    ("form", "prefix", "telephone"),
    [
        (NumberForm.NATIONAL, "", "12025550123"),
        (NumberForm.NATIONAL, "9", "912025550123"),
        (NumberForm.INTERNATIONAL, "", "12025550123"),
        (NumberForm.E164, "", "+12025550123"),
    ],
)
def test_an_allowed_foreign_number_is_never_sent_in_national_form(
    form: NumberForm, prefix: str, telephone: str
) -> None:
    options = ValidateOptions(form=form, dial_prefix=prefix, allow_foreign=True)
    outcome = one("+1 202-555-0123", options=options)
    assert (outcome.status, outcome.telephone) == (Status.READY, telephone)
    assert outcome.message == (
        "valid US fixed-line or mobile number (foreign, allowed by --allow-foreign); "
        f"sent as {telephone}"
    )


def test_a_non_geographic_number_is_named_by_its_code() -> None:
    outcome = one("+800 1234 5678", options=ValidateOptions(allow_foreign=True))
    assert outcome.telephone == "80012345678"
    assert outcome.message.startswith("valid +800 toll-free number (foreign")


def test_another_region() -> None:
    mx = ValidateOptions(region="MX", form=NumberForm.E164)
    assert one("55 1234 5678", options=mx).telephone == "+525512345678"
    assert one("+57 319 123 4567", options=mx).message == (
        "'+57 319 123 4567' is a CO number, not MX; add --allow-foreign to send it"
    )


def test_region_may_be_lower_case() -> None:
    assert one("3191234567", options=ValidateOptions(region="co")).telephone == "3191234567"


# --- split cells ---------------------------------------------------------------------------------


@pytest.mark.parametrize("separator", ["/", ";", ",", "|", "\n", "\r\n", " / ", " ;  "])
def test_a_cell_with_two_numbers_gives_two_parts(separator: str) -> None:
    outcomes = judge(f"319 123 4567{separator}300-123-4567", 20)
    assert [(o.part, o.raw_phone, o.telephone, o.status) for o in outcomes] == [
        (1, "319 123 4567", "3191234567", Status.READY),
        (2, "300-123-4567", "3001234567", Status.READY),
    ]
    assert {(o.row, o.raw_days, o.days_block) for o in outcomes} == {(7, "20", 20)}


def test_a_split_cell_judges_each_piece_on_its_own() -> None:
    outcomes = judge("3191234567; 319123;;no tiene; 3.19E+09|3001234567.0;")
    assert [(o.part, o.raw_phone, o.reason) for o in outcomes] == [
        (1, "3191234567", Reason.VALID),
        (2, "319123", Reason.TOO_SHORT),
        (3, "no tiene", Reason.NOT_A_NUMBER),
        (4, "3.19E+09", Reason.LOST_DIGITS),
        (5, "3001234567.0", Reason.VALID),
    ]
    assert outcomes[1].message == "'319123' is too short for a CO number"


def test_scientific_notation_is_judged_before_the_comma_splits() -> None:
    outcomes = judge("3,19123E+09")
    assert [(o.part, o.reason) for o in outcomes] == [(1, Reason.LOST_DIGITS)]


@pytest.mark.parametrize("date", ["15/01/2024", "1/2/24", "2024-01-15"])
def test_a_date_is_one_not_a_number_line(date: str) -> None:
    assert [(o.part, o.reason, o.raw_phone) for o in judge(date)] == [
        (1, Reason.NOT_A_NUMBER, date)
    ]


def test_an_iso_date_among_numbers_is_its_own_line() -> None:
    assert [(o.part, o.reason) for o in judge("3191234567; 2024-01-15")] == [
        (1, Reason.VALID),
        (2, Reason.NOT_A_NUMBER),
    ]


def test_a_cell_of_separators_only_is_one_not_a_number_line() -> None:
    assert [(o.part, o.reason) for o in judge(" ; / ")] == [(1, Reason.NOT_A_NUMBER)]


# --- days ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "value"),
    [
        (15, 15),
        (15.0, 15),
        ("15", 15),
        (" 15 ", 15),
        ("15.0", 15),
        ("15,0", 15),
        ("+15", 15),
        ("015", 15),
        (3650, 3650),
        (1, 1),
    ],
)
def test_good_days(days: CellValue, value: int) -> None:
    outcome = one("3191234567", days)
    assert (outcome.status, outcome.days_block, outcome.raw_days) == (
        Status.READY,
        value,
        format_cell(days),
    )


@pytest.mark.parametrize(
    ("days", "reason", "message"),
    [
        (None, Reason.MISSING_DAYS, "days_block is empty; fill it in or give --default-days"),
        ("  ", Reason.MISSING_DAYS, "days_block is empty; fill it in or give --default-days"),
        (0, Reason.DAYS_ZERO, "days_block '0' is zero; give a whole number of days from 1 to 3650"),
        (
            "0,0",
            Reason.DAYS_ZERO,
            "days_block '0,0' is zero; give a whole number of days from 1 to 3650",
        ),
        (
            "-0",
            Reason.DAYS_ZERO,
            "days_block '-0' is zero; give a whole number of days from 1 to 3650",
        ),
        (
            -5,
            Reason.DAYS_NEGATIVE,
            "days_block '-5' is negative; give a whole number of days from 1 to 3650",
        ),
        (
            "-5",
            Reason.DAYS_NEGATIVE,
            "days_block '-5' is negative; give a whole number of days from 1 to 3650",
        ),
        (
            -2.5,
            Reason.DAYS_NEGATIVE,
            "days_block '-2.5' is negative; give a whole number of days from 1 to 3650",
        ),
        (15.5, Reason.DAYS_FRACTIONAL, "days_block '15.5' is not a whole number of days"),
        ("15.5", Reason.DAYS_FRACTIONAL, "days_block '15.5' is not a whole number of days"),
        ("15,5", Reason.DAYS_FRACTIONAL, "days_block '15,5' is not a whole number of days"),
        (
            "quince",
            Reason.DAYS_NOT_A_NUMBER,
            "days_block 'quince' is not a number of days; write it as digits, such as 15",
        ),
        (
            "15 días",
            Reason.DAYS_NOT_A_NUMBER,
            "days_block '15 días' is not a number of days; write it as digits, such as 15",
        ),
        (
            True,
            Reason.DAYS_NOT_A_NUMBER,
            "days_block 'TRUE' is not a number of days; write it as digits, such as 15",
        ),
        (
            float("nan"),
            Reason.DAYS_NOT_A_NUMBER,
            "days_block 'nan' is not a number of days; write it as digits, such as 15",
        ),
        (
            "1.000",
            Reason.DAYS_NOT_A_NUMBER,
            (
                "days_block '1.000' could have a decimal or a thousands separator; "
                "write the days as digits only, such as 15"
            ),
        ),
        (5000, Reason.DAYS_TOO_LARGE, "days_block 5000 is above --max-days 3650"),
        ("3651", Reason.DAYS_TOO_LARGE, "days_block 3651 is above --max-days 3650"),
        (1e300, Reason.DAYS_TOO_LARGE, "days_block '1e+300' is above --max-days 3650"),
    ],
)
def test_each_days_reason_keeps_the_telephone(days: CellValue, reason: str, message: str) -> None:
    outcome = one("319 123 4567", days)
    assert (outcome.status, outcome.reason, outcome.message) == (Status.INVALID, reason, message)
    assert (outcome.telephone, outcome.days_block) == ("3191234567", None)
    assert outcome.raw_days == format_cell(days)


def test_blank_days_take_the_default_and_say_so() -> None:
    options = ValidateOptions(default_days=30)
    for blank in (None, "", "  "):
        outcome = one("3191234567", blank, options)
        assert (outcome.status, outcome.days_block) == (Status.READY, 30)
        assert outcome.message == (
            "valid CO mobile number; sent as 3191234567; days_block 30 from --default-days"
        )
    assert one("3191234567", 7, options).days_block == 7


def test_max_days_is_a_setting() -> None:
    options = ValidateOptions(max_days=90)
    assert one("3191234567", 90, options).status is Status.READY
    assert one("3191234567", 91, options).message == "days_block 91 is above --max-days 90"


def test_when_both_are_bad_the_phone_wins_and_both_are_named() -> None:
    outcome = one("319123", "quince")
    assert outcome.reason == Reason.TOO_SHORT
    assert outcome.message == (
        "'319123' is too short for a CO number; also days_block 'quince' is not a number "
        "of days; write it as digits, such as 15"
    )
    assert (outcome.telephone, outcome.days_block) == ("", None)


# --- format_cell ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        ("", ""),
        (" 319 ", " 319 "),
        (3191234567, "3191234567"),
        (3191234567.0, "3191234567"),
        (15.0, "15"),
        (-0.0, "0"),
        (15.5, "15.5"),
        (0.1, "0.1"),
        (1e15, "1000000000000000.0"),
        (1.2345678901234567e18, "1.2345678901234568e+18"),
        (float("inf"), "inf"),
        (True, "TRUE"),
        (False, "FALSE"),
    ],
)
def test_format_cell(value: CellValue, text: str) -> None:
    assert format_cell(value) == text


# --- check_options -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            ValidateOptions(region="XX"),
            (
                "--region XX is not a region code phonenumbers knows; "
                "use a two-letter code such as CO, MX or PE"
            ),
        ),
        (
            ValidateOptions(region="001"),
            (
                "--region 001 is not a region code phonenumbers knows; "
                "use a two-letter code such as CO, MX or PE"
            ),
        ),
        (
            ValidateOptions(dial_prefix="9a"),
            (
                "--dial-prefix '9a' is not 1 to 4 digits; "
                "give the digits your dialer puts before each number, such as 9"
            ),
        ),
        (
            ValidateOptions(dial_prefix="12345"),
            (
                "--dial-prefix '12345' is not 1 to 4 digits; "
                "give the digits your dialer puts before each number, such as 9"
            ),
        ),
        (
            ValidateOptions(dial_prefix="+9"),
            (
                "--dial-prefix '+9' is not 1 to 4 digits; "
                "give the digits your dialer puts before each number, such as 9"
            ),
        ),
        (
            ValidateOptions(form=NumberForm.E164, dial_prefix="9"),
            (
                "--dial-prefix cannot be used with --number-form e164 (an E.164 number starts "
                "with +); use --number-form national or international with it"
            ),
        ),
        (
            ValidateOptions(max_days=0),
            "--max-days 0 is below 1; give the longest block you allow in days, such as 3650",
        ),
        (
            ValidateOptions(default_days=0),
            (
                "--default-days 0 is not between 1 and --max-days 3650; "
                "give a whole number of days in that range"
            ),
        ),
        (
            ValidateOptions(default_days=91, max_days=90),
            (
                "--default-days 91 is not between 1 and --max-days 90; "
                "give a whole number of days in that range"
            ),
        ),
    ],
)
def test_check_options_refuses_with_the_fix(options: ValidateOptions, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        check_options(options)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    "options",
    [
        ValidateOptions(),
        ValidateOptions(region="pe", dial_prefix="9", default_days=1, max_days=1),
        ValidateOptions(form=NumberForm.INTERNATIONAL, dial_prefix="0057", default_days=3650),
        ValidateOptions(form=NumberForm.E164, allow_foreign=True),
    ],
)
def test_check_options_accepts_good_settings(options: ValidateOptions) -> None:
    check_options(options)  # raises on failure


# --- properties ----------------------------------------------------------------------------------


def _examples() -> list[str]:
    """Real example numbers of a few regions, written the ways people write them."""
    found = []
    for region in ("CO", "MX", "PE", "US", "ES"):
        for kind in (
            phonenumbers.PhoneNumberType.MOBILE,
            phonenumbers.PhoneNumberType.FIXED_LINE,
            phonenumbers.PhoneNumberType.TOLL_FREE,
        ):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            for fmt in (
                phonenumbers.PhoneNumberFormat.NATIONAL,
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.E164,
            ):
                found.append(phonenumbers.format_number(number, fmt))
    return found


def _valid_examples() -> list[phonenumbers.PhoneNumber]:
    """Every valid example number phonenumbers has for a few regions.

    Not BR, DE, ID, NL, SE, VN, XK: there some international digits without + read back as a
    national number (4915123456789 in DE is itself valid), so that form cannot round-trip.
    """
    found = []
    for region in ("CO", "MX", "PE", "US", "ES", "AR", "EC", "VE"):
        for kind in range(12):
            number = phonenumbers.example_number_for_type(region, kind)
            if (
                number is not None
                and phonenumbers.region_code_for_number(number) == region
                and phonenumbers.is_valid_number(number)
            ):
                found.append(number)
    return found


_digits = st.text(alphabet="0123456789", min_size=1, max_size=15)
_phone_text = st.one_of(
    st.sampled_from(_examples()),
    st.builds(lambda d: "3" + d, st.text(alphabet="0123456789", min_size=9, max_size=9)),
    st.builds(
        lambda p, d: p + d, st.sampled_from(["", "+", "+57", "57", "0", "9", "+1 "]), _digits
    ),
    st.text(alphabet="0123456789 +-.,;/|()\nEex#aN", max_size=30),
    st.text(max_size=20),
)
_joined = st.lists(_phone_text, min_size=1, max_size=4).flatmap(
    lambda parts: st.sampled_from(["/", ";", ",", "|", "\n", " ; "]).map(
        lambda sep: sep.join(parts)
    )
)
_phones = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**16), max_value=10**16),
    st.builds(lambda d: 3_000_000_000 + d, st.integers(0, 999_999_999)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.builds(float, st.integers(0, 10**16)),
    _phone_text,
    _joined,
)
_days = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.integers(1, 400),
    st.builds(str, st.integers(1, 400)),
    st.sampled_from(
        ["15", " 15 ", "15.0", "15,0", "1.000", "quince", "", "0", "-3", "3650", "15,5"]
    ),
)


@st.composite
def _options(draw: st.DrawFn) -> ValidateOptions:
    form = draw(st.sampled_from(list(NumberForm)))
    prefix = "" if form is NumberForm.E164 else draw(st.sampled_from(["", "9", "0057"]))
    max_days = draw(st.integers(1, 5000))
    default = draw(st.one_of(st.none(), st.integers(1, max_days)))
    return ValidateOptions(
        region=draw(st.sampled_from(["CO", "MX", "PE", "US"])),
        form=form,
        dial_prefix=prefix,
        allow_foreign=draw(st.booleans()),
        default_days=default,
        max_days=max_days,
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(phone=_phones, days=_days, options=_options(), row=st.integers(1, 10**6))
def test_every_row_gives_well_formed_outcomes(
    phone: CellValue, days: CellValue, options: ValidateOptions, row: int
) -> None:
    check_options(options)
    outcomes = list(validate([RawRow("a.xlsx", "Datos", row, phone, days)], options))
    assert outcomes, "a row was lost"
    assert [o.part for o in outcomes] == list(range(1, len(outcomes) + 1))
    shape = re.compile(r"\+[0-9]+" if options.form is NumberForm.E164 else "[0-9]+")
    for outcome in outcomes:
        assert (outcome.source_file, outcome.sheet, outcome.row) == ("a.xlsx", "Datos", row)
        assert outcome.status in (Status.READY, Status.INVALID)
        assert outcome.reason and outcome.message and outcome.batch is None
        assert outcome.raw_days == format_cell(days)
        assert (outcome.status is Status.READY) == (outcome.reason == Reason.VALID)
        if outcome.telephone:
            assert shape.fullmatch(outcome.telephone), outcome
            assert outcome.telephone.startswith(options.dial_prefix)
        if outcome.status is Status.READY:
            assert outcome.telephone
            assert outcome.days_block is not None and 1 <= outcome.days_block <= options.max_days
            _assert_idempotent(outcome, options)


def _assert_idempotent(outcome: Outcome, options: ValidateOptions) -> None:
    """A telephone fed back (same form, no prefix) is read as the same telephone."""
    sent = outcome.telephone[len(options.dial_prefix) :]
    fed = sent
    if "(foreign" in outcome.message and options.form is not NumberForm.E164:
        fed = "+" + sent  # international digits carry no + to say their country; add it back
    again = one(fed, 1, dataclasses.replace(options, dial_prefix=""))
    assert (again.status, again.telephone) == (Status.READY, sent), (outcome, again)


@given(phone=_phones, days=_days)
@settings(max_examples=200, deadline=None)
def test_several_rows_keep_their_order(phone: CellValue, days: CellValue) -> None:
    rows = [RawRow("x.csv", "", n, phone, days) for n in (2, 3, 5)]
    outcomes = list(validate(rows, CO))
    assert sorted(o.row for o in outcomes) == [o.row for o in outcomes]
    per_row = [sum(o.row == n for o in outcomes) for n in (2, 3, 5)]
    assert per_row[0] >= 1 and per_row.count(per_row[0]) == 3


@settings(max_examples=200, deadline=None)
@given(
    number=st.sampled_from(_valid_examples()),
    options=_options(),
    fmt=st.sampled_from(
        [
            phonenumbers.PhoneNumberFormat.NATIONAL,
            phonenumbers.PhoneNumberFormat.INTERNATIONAL,
            phonenumbers.PhoneNumberFormat.E164,
        ]
    ),
)
def test_a_valid_number_is_ready_and_idempotent(
    number: phonenumbers.PhoneNumber, options: ValidateOptions, fmt: int
) -> None:
    region = phonenumbers.region_code_for_number(number)
    assert region is not None
    options = dataclasses.replace(options, region=region)
    outcome = one(phonenumbers.format_number(number, fmt), 1, options)
    assert outcome.status is Status.READY, outcome
    national = phonenumbers.national_significant_number(number)
    expected = {
        NumberForm.NATIONAL: national,
        NumberForm.INTERNATIONAL: f"{number.country_code}{national}",
        NumberForm.E164: f"+{number.country_code}{national}",
    }[options.form]
    assert outcome.telephone == options.dial_prefix + expected
    _assert_idempotent(outcome, options)


def test_a_huge_cell_is_judged_and_quoted_short() -> None:
    outcome = one("1" * 20_000 + "a", "1" * 20_000)
    assert outcome.reason == Reason.NOT_A_NUMBER
    assert outcome.raw_phone == "1" * 20_000 + "a"
    assert outcome.message == (
        f"'{'1' * 77}...' is not a phone number; {NOT_A_NUMBER_FIX}; also days_block "
        f"'{'1' * 77}...' is above --max-days 3650"
    )
    assert one("1" * 300).reason == Reason.TOO_LONG
    assert one("3191234567", "-" + "1" * 20_000).reason == Reason.DAYS_NEGATIVE
    assert one("3191234567", "1" * 20_000 + ",5").reason == Reason.DAYS_FRACTIONAL
    assert one("3191234567", 10**30).message == (
        "days_block '1000000000000000000000000000000' is above --max-days 3650"
    )
    assert one(10**30).message == "'1000000000000000000000000000000' is too long for a CO number"
    assert format_cell(10**5000) == "<an integer of more than 4300 digits>"


@pytest.mark.parametrize(
    ("phone", "days", "telephone", "days_block"),
    [("'+57 319 123 4567", "'30", "3191234567", 30), ("'3191234567", "15", "3191234567", 15)],
)
def test_a_leading_apostrophe_from_our_reports_is_dropped(
    phone: str, days: str, telephone: str, days_block: int
) -> None:
    (line,) = validate([RawRow("errors.csv", "", 2, phone, days)], ValidateOptions())
    assert (line.status, line.telephone, line.days_block) == (Status.READY, telephone, days_block)
    assert line.raw_phone == phone


def test_a_negative_days_value_behind_an_apostrophe_is_still_negative() -> None:
    (line,) = validate([RawRow("errors.csv", "", 2, "3191234567", "'-5")], ValidateOptions())
    assert (line.status, line.reason) == (Status.INVALID, "days-negative")


def test_a_0057_number_gets_a_hint_to_write_plus_57() -> None:
    (line,) = validate([RawRow("a.csv", "", 3, "0057 310 987 6543", "30")], ValidateOptions())
    assert (line.status, line.reason) == (Status.INVALID, "invalid-number")
    assert line.message == (
        "'0057 310 987 6543' is not a valid RU number; check its digits in the source "
        "(if 0057 was meant as the country code, write +57 instead)"
    )
