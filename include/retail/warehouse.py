"""The warehouse's DDL and grants (``include/sql/``), applied idempotently."""

from __future__ import annotations

from pathlib import Path

import psycopg

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

# Serialises concurrent applications (two runs starting together) on one database.
_DDL_LOCK_KEY = 0x7265_7461_696C  # "retail"


def ddl_files(sql_dir: Path = SQL_DIR) -> list[Path]:
    """The DDL scripts, in the order they apply (their names sort in dependency order)."""
    return sorted(sql_dir.glob("*.sql"))


def apply_ddl(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Run every script in one transaction; each is written to be re-run. Returns the names applied."""
    applied = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("select pg_advisory_xact_lock(%s)", (_DDL_LOCK_KEY,))
        for script in ddl_files(sql_dir):
            cur.execute(script.read_text())
            applied.append(script.name)
    return applied
