"""Issue 22 on the real data: the CSV export written with US-style dates (12/1/2010 8:26), as the widely shared
export writes them, is settled month-first by its own dates and loads exactly as the ISO export does."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from include.retail.ingest.sandboxed_read import read_typed

pytestmark = pytest.mark.real_data


def typed_rows(path: Path) -> tuple[pl.DataFrame, int]:
    source = read_typed(path, f"incoming/{path.name}")
    try:
        batches = list(source.batches())
    finally:
        source.close()
    return pl.concat([batch.rows for batch in batches]), sum(batch.rejected.height for batch in batches)


def test_the_real_csv_with_us_dates_loads_as_the_iso_one(real_csv: Path, tmp_path: Path) -> None:
    us_dates = tmp_path / "online_retail_us.csv"
    pl.read_csv(real_csv, infer_schema=False).with_columns(
        pl.col("InvoiceDate").str.to_datetime("%Y-%m-%d %H:%M:%S").dt.strftime("%-m/%-d/%Y %-H:%M")
    ).write_csv(us_dates)
    assert us_dates.read_text()[:200].splitlines()[1].endswith(",12/1/2010 8:26,2.55,17850,United Kingdom")

    iso_rows, iso_rejected = typed_rows(real_csv)
    us_rows, us_rejected = typed_rows(us_dates)

    assert (iso_rows.height, iso_rejected, us_rejected) == (541_909, 0, 0)
    assert us_rows.equals(iso_rows)
