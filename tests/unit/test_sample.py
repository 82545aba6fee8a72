from __future__ import annotations

import hashlib
from pathlib import Path

from devstack.sample import NON_PRODUCTS, PRODUCT_VARIANTS, sample_rows, sample_workbook


def test_sample_workbook_bytes_are_reproducible(tmp_path: Path) -> None:
    first = sample_workbook(tmp_path / "a").read_bytes()
    second = sample_workbook(tmp_path / "b").read_bytes()
    assert hashlib.sha256(first).digest() == hashlib.sha256(second).digest()


def test_sample_has_the_real_datas_quirks() -> None:
    rows = sample_rows()
    invoices = [row[0] for row in rows]
    assert any(isinstance(invoice, int) for invoice in invoices)
    cancellations = [row for row in rows if isinstance(row[0], str) and row[0].startswith("C")]
    assert cancellations
    assert all(row[3] < 0 for row in cancellations)
    assert 0.15 < sum(row[6] is None for row in rows) / len(rows) < 0.35  # missing customers
    assert {row[1] for row in rows} & {code for code, _, _ in NON_PRODUCTS}
    assert {type(row[1]) for row in rows} == {int, str}  # mixed-type stock codes
    assert len({tuple(row) for row in rows}) < len(rows)  # exact duplicates
    assert any(row[5] == 0 for row in rows)
    ((code, variant),) = PRODUCT_VARIANTS.items()
    assert {row[2] for row in rows if row[1] == code} == {"WHITE METAL LANTERN", variant}
