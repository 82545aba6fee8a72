"""The ledger's statuses are defined twice, by necessity: in Python (ledger.Status) and in the table's check
constraint (include/sql/010_bronze.sql). A status added in one place only fails here, not in the integration suite."""

from __future__ import annotations

import re
from pathlib import Path

from include.retail.ingest.ledger import Status

BRONZE_SQL = Path(__file__).resolve().parents[2] / "include" / "sql" / "010_bronze.sql"


def constraint_statuses(sql: str) -> list[set[str]]:
    """The statuses each ``load_ledger_status_check`` in ``sql`` allows (the table's and the migration's)."""
    checks = re.findall(
        r"constraint\s+load_ledger_status_check\s+check\s*\(\s*status\s+in\s*\(([^)]*)\)\s*\)", sql, re.IGNORECASE
    )
    return [set(re.findall(r"'([^']*)'", values)) for values in checks]


def test_the_status_enum_is_what_the_ledgers_check_constraint_allows() -> None:
    allowed = constraint_statuses(BRONZE_SQL.read_text())

    assert len(allowed) == 2, "expected the check in create table and the one that replaces older ledgers' check"
    assert all(statuses == {status.value for status in Status} for statuses in allowed), allowed


def test_the_parser_sees_a_status_missing_from_the_sql() -> None:
    """The check above would catch a status added to Status only: the parser reads each constraint's list."""
    sql = "alter table t add constraint load_ledger_status_check\n    check (status in ('loaded', 'duplicate'));"

    assert constraint_statuses(sql) == [{"loaded", "duplicate"}]
    assert constraint_statuses(sql)[0] != {status.value for status in Status}
