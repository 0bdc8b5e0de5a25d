"""The script a user would write instead of dnc-import: the peer the benchmarks compare with.

    WOLKVOX_TOKEN=... python benchmarks/reference.py numbers-200000.xlsx --url URL --out out.csv
    python benchmarks/reference.py numbers-1000000.csv --dry-run --out out.csv

pandas reads the file (``read_excel`` with its default engine, or ``read_csv``), a row-by-row
``apply`` of phonenumbers judges each phone (parse in CO, ``is_valid_number``, national digits),
duplicates are dropped, the valid numbers are posted in batches of 1000 with one httpx client
(keep-alive), and ``df.to_csv`` writes the outcomes: every row with ``telephone`` ("" when
invalid) and ``status`` (invalid, duplicate, ready, added, failed).

It is written plainly but not carelessly, so that it is a fair peer: whole floats become ints
before parsing (Excel numbers), ``keep_default_na=False`` keeps ``N/A`` as text in the CSV,
and it uses one keep-alive client. It knows its file (column names, ``;``, UTF-8) as a user
knows theirs. It imports nothing from dnc-import.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time

import httpx
import pandas as pd
import phonenumbers

_NON_DIGITS = re.compile(r"\D")


def normalize(value: object) -> str:
    """The national digits of a valid Colombian number, else ""."""
    if isinstance(value, float):
        if math.isnan(value) or not value.is_integer():
            return ""
        value = int(value)
    try:
        number = phonenumbers.parse(str(value), "CO")
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_valid_number(number):
        return ""
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return _NON_DIGITS.sub("", national)


def read(path: str) -> pd.DataFrame:
    if path.lower().endswith((".xlsx", ".xls", ".xlsm", ".ods")):
        return pd.read_excel(path)
    return pd.read_csv(path, sep=";", encoding="utf-8-sig", dtype=str, keep_default_na=False)


def send(
    frame: pd.DataFrame, url: str, token: str, batch_size: int, days_column: str
) -> pd.Series:
    """Posts the ready rows in batches; returns their new status (added or failed)."""
    ready = frame[frame["status"] == "ready"]
    telephones = ready["telephone"].tolist()
    days = [str(int(d)) for d in ready[days_column].tolist()]
    status: list[str] = []
    with httpx.Client(timeout=75.0) as client:
        for start in range(0, len(telephones), batch_size):
            body = [
                {"telephone": t, "days_block": d}
                for t, d in zip(
                    telephones[start : start + batch_size], days[start : start + batch_size]
                )
            ]
            response = client.post(url, json=body, headers={"wolkvox-token": token})
            ok = response.status_code == 200 and str(response.json().get("code")) == "201"
            status.extend(["added" if ok else "failed"] * len(body))
    return pd.Series(status, index=ready.index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("file")
    parser.add_argument("--url", help="The add_dnc URL (with ?api=add_dnc).")
    parser.add_argument("--out", required=True, help="Where the outcomes CSV is written.")
    parser.add_argument("--dry-run", action="store_true", help="Judge and report; send nothing.")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--phone-column", default="Teléfono")
    parser.add_argument("--days-column", default="Días de bloqueo")
    args = parser.parse_args()
    started = time.perf_counter()

    frame = read(args.file)
    frame["telephone"] = frame.apply(lambda row: normalize(row[args.phone_column]), axis=1)
    frame["status"] = "ready"
    frame.loc[frame["telephone"] == "", "status"] = "invalid"
    duplicated = frame["telephone"].ne("") & frame.duplicated("telephone")
    frame.loc[duplicated, "status"] = "duplicate"
    if not args.dry_run:
        if not args.url:
            sys.exit("give --url, or --dry-run")
        added = send(
            frame, args.url, os.environ["WOLKVOX_TOKEN"], args.batch_size, args.days_column
        )
        frame.loc[added.index, "status"] = added
    frame.to_csv(args.out, index=False)

    counts = frame["status"].value_counts().to_dict()
    print(json.dumps({"rows": len(frame), "by_status": counts,
                      "seconds": round(time.perf_counter() - started, 3)}))


if __name__ == "__main__":
    main()
