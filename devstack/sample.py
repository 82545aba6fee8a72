"""Deterministic sample files shaped like the Online Retail workbook, quirks included.

The demo loads the sample workbook when no WORKBOOK is given; the tests build small workbooks and
CSVs with the same writers. The bytes are reproducible (fixed seed, fixed document dates), so loading
the sample twice is recognised as the same content.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import xlsxwriter

HEADER = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"]

# (stock code, description, unit price). All-digit codes are written as numbers, as Excel holds them.
PRODUCTS: list[tuple[object, str, float]] = [
    ("85123A", "WHITE HANGING HEART T-LIGHT HOLDER", 2.55),
    (71053, "WHITE METAL LANTERN", 3.39),
    ("84406B", "CREAM CUPID HEARTS COAT HANGER", 2.75),
    ("84029G", "KNITTED UNION FLAG HOT WATER BOTTLE", 3.39),
    (22752, "SET 7 BABUSHKA NESTING BOXES", 7.65),
    (21730, "GLASS STAR FROSTED T-LIGHT HOLDER", 4.25),
    (22633, "HAND WARMER UNION JACK", 1.85),
    (22632, "HAND WARMER RED POLKA DOT", 1.85),
    (84879, "ASSORTED COLOUR BIRD ORNAMENT", 1.69),
    (22745, "POPPY'S PLAYHOUSE BEDROOM ", 2.1),  # trailing space, as 112,626 real descriptions have
    (22748, "POPPY'S PLAYHOUSE KITCHEN", 2.1),
    (22310, "IVORY KNITTED MUG COSY ", 1.65),
    ("85099B", "JUMBO BAG RED RETROSPOT", 1.95),
    (47566, "PARTY BUNTING", 4.95),
    ("15056BL", "EDWARDIAN PARASOL BLACK", 5.95),
]
# One code written with two descriptions (650 real codes are).
PRODUCT_VARIANTS = {71053: "WHITE MOROCCAN METAL LANTERN"}
# Stock codes that are not products.
NON_PRODUCTS: list[tuple[object, str, float]] = [
    ("POST", "POSTAGE", 18.0),
    ("DOT", "DOTCOM POSTAGE", 120.3),
    ("M", "Manual", 0.85),
    ("D", "Discount", 27.5),
    ("BANK CHARGES", "Bank Charges", 15.0),
    ("AMAZONFEE", "AMAZON FEE", 5.5),
]
COUNTRIES = ["United Kingdom"] * 8 + ["France", "Germany", "EIRE", "Spain", "Netherlands", "Australia"]

_DOCUMENT_DATE = datetime(2011, 12, 10)


def sample_rows(invoices: int = 600, seed: int = 2011) -> list[list[object]]:
    """Rows of invoices from December 2010 on, with cancellations, missing customers, non-product
    lines, zero prices, a code with two descriptions and exact duplicate rows."""
    rng = random.Random(seed)
    customers = [12346 + 7 * n for n in range(120)]
    rows: list[list[object]] = []
    moment = datetime(2010, 12, 1, 8, 26)
    for number in range(536365, 536365 + invoices):
        moment += timedelta(minutes=rng.randint(5, 90))
        if moment.hour >= 20:
            moment = (moment + timedelta(days=1)).replace(hour=8, minute=rng.randint(0, 59))
        customer: float | None = float(rng.choice(customers)) if rng.random() > 0.25 else None
        country = rng.choice(COUNTRIES)
        cancelled = rng.random() < 0.04
        invoice: object = f"C{number}" if cancelled else number
        for _ in range(rng.randint(1, 8)):
            code, description, price = rng.choice(PRODUCTS) if rng.random() > 0.05 else rng.choice(NON_PRODUCTS)
            if code in PRODUCT_VARIANTS and rng.random() < 0.3:
                description = PRODUCT_VARIANTS[code]
            if rng.random() < 0.01:
                price = 0.0
            quantity = rng.choice([1, 2, 3, 4, 6, 8, 12, 24, 48])
            rows.append(
                [invoice, code, description, -quantity if cancelled else quantity, moment, price, customer, country]
            )
            if rng.random() < 0.01:
                rows.append(list(rows[-1]))  # an exact duplicate line
    return rows


def write_workbook(path: Path, sheets: dict[str, Sequence[Sequence[object]]]) -> Path:
    """Write sheets of rows (the first row is the header) with real numeric, text and date cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False})
    workbook.set_properties({"created": _DOCUMENT_DATE, "author": "retail-pipeline sample"})
    date_format = workbook.add_format({"num_format": "m/d/yyyy h:mm"})
    for name, rows in sheets.items():
        sheet = workbook.add_worksheet(name)
        for row_number, row in enumerate(rows):
            for column, value in enumerate(row):
                if value is None:
                    continue
                if isinstance(value, datetime):
                    sheet.write_datetime(row_number, column, value, date_format)
                elif isinstance(value, (int, float)):
                    sheet.write_number(row_number, column, value)
                else:
                    sheet.write_string(row_number, column, str(value))
    workbook.close()
    return path


def write_csv(path: Path, rows: Sequence[Sequence[object]], encoding: str = "utf-8") -> Path:
    """Write rows (header first) as a CSV export would: dates as 'YYYY-MM-DD HH:MM:SS', nulls empty."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def text(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return str(value)

    with path.open("w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle)
        for row in rows:
            writer.writerow([text(value) for value in row])
    return path


def sample_workbook(folder: Path, name: str = "online_retail_sample.xlsx") -> Path:
    """The demo's workbook, written once and then reused."""
    path = folder / name
    if not path.exists():
        write_workbook(path, {"Online Retail": [HEADER, *sample_rows()]})
    return path
