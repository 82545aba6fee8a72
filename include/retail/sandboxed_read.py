"""Read and type a source file so that no file, however hostile, can take the worker down with it.

Two lines of defence. First the cheap checks of ``workbook_limits`` in this process (the zip
directory, each sheet's declared dimension): the obvious cases are rejected in milliseconds. Then the
read and typing run in a child process (a fresh interpreter, not a fork: polars deadlocks after fork)
under a memory limit, so that whatever lies its way past the checks (a dimension that understates, a
huge string) ends as a rejection that names the file and the limit, not as a dead worker.

The child writes the typed frames as uncompressed Arrow IPC files in the caller's folder, which the
parent maps into memory: handing back 541,909 rows costs milliseconds, not a copy through a pipe.

The memory limit is RLIMIT_DATA, not RLIMIT_AS: polars and its allocator reserve address space they
never touch, and the real workbook aborts under an RLIMIT_AS of 800 MB while it reads in 600 MB of
RLIMIT_DATA (resident peak 453 MB); a 1,048,575-row workbook reads within 900 MB (resident 813 MB).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from include.retail import workbook_limits
from include.retail.workbook_limits import SheetPart, WorkbookLayout

if TYPE_CHECKING:
    import polars as pl

    from include.retail.contract import TypedSheet
    from include.retail.reader import Sheet

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_RESULT = "result.json"


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what reading one file may cost; a file beyond any of them is rejected, naming the bound.

    The defaults let a 1,048,575-row workbook (Excel's limit) through with room to spare.
    """

    max_memory_mb: int = 2048
    """Memory (MiB, RLIMIT_DATA of the child process) the read and typing may use. The real workbook
    needs ~600, a 1,048,575-row one ~900."""

    max_seconds: float = 600
    """Wall-clock time the read and typing may take; the real workbook takes ~2 s."""

    max_uncompressed_mb: int = 2048
    """Size (MiB) a workbook may unpack to; the real workbook unpacks to 152, a 1,048,575-row one to ~300."""

    max_compression_ratio: int = 100
    """How many times a zip entry over 1 MiB may expand; worksheet XML expands ~8 times, a zip bomb 1000."""

    max_sheet_cells: int = workbook_limits.MAX_ROWS * 64
    """Cells a sheet's declared dimension may span (rows × columns): a full-height sheet 64 columns wide.
    A reader makes one dense grid of it, 32 bytes a cell before any text."""

    @classmethod
    def from_settings(cls, setting: Callable[[str], str | None]) -> ReadLimits:
        """The limits ``setting`` (field name -> text, or None) overrides, the others at their default: settings
        arrive as text (Airflow Variables), so each is converted to its field's type."""
        overrides: dict[str, int | float] = {}
        for limit in fields(cls):
            value = setting(limit.name)
            if value is not None:
                kind = type(limit.default) if limit.default is not MISSING else float
                overrides[limit.name] = kind(float(value)) if kind is int else kind(value)
        return cls(**overrides)


@dataclass(frozen=True)
class TypedSource:
    sheets: list[TypedSheet]
    row_count: int  # data rows read, typed or rejected
    encoding: str | None  # of a CSV


def read_typed(path: Path, source_name: str, limits: ReadLimits | None = None) -> TypedSource:
    """Read and type the file; raises contract.FileRejected (naming source_name) for anything that is the file's fault.

    Anything else (the child killed from outside, a bug) raises RuntimeError: the platform's fault, retried.
    """
    from include.retail import contract

    limits = limits or ReadLimits()
    reason, layout = workbook_limits.check_file(
        path,
        source_name,
        max_uncompressed_mb=limits.max_uncompressed_mb,
        max_compression_ratio=limits.max_compression_ratio,
        max_sheet_cells=limits.max_sheet_cells,
    )
    if reason:
        raise contract.FileRejected(source_name, reason)
    with tempfile.TemporaryDirectory(prefix="typed-", dir=path.parent) as folder:
        request = {
            "path": str(path),
            "source_name": source_name,
            "max_memory_mb": limits.max_memory_mb,
            "layout": {name: asdict(part) for name, part in layout.sheets.items()},
            "folder": folder,
        }
        outcome = _run_child(request, limits, source_name)
        if "rejected" in outcome:
            raise contract.FileRejected(source_name, outcome["rejected"], outcome.get("details"))
        return _typed_source(outcome, Path(folder))


def _run_child(request: dict, limits: ReadLimits, source_name: str) -> dict:
    from include.retail import contract

    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "include.retail.sandboxed_read", json.dumps(request)],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=str(_PROJECT_ROOT),
    )
    try:
        _, stderr = child.communicate(timeout=limits.max_seconds)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise contract.FileRejected(
            source_name, f"takes longer than the {limits.max_seconds:,.0f} s allowed to read"
        ) from None
    result = Path(request["folder"]) / _RESULT
    if child.returncode == 0 and result.is_file():
        return json.loads(result.read_text())
    error = workbook_limits.without_paths(Exception(stderr.decode(errors="replace").strip()[-2000:]))
    out_of_memory = "memory allocation of" in error or "MemoryError" in error or "Cannot allocate memory" in error
    if out_of_memory or child.returncode == -signal.SIGABRT:
        return {"rejected": f"needs more than the {limits.max_memory_mb:,} MB allowed to read"}
    if child.returncode in (-signal.SIGSEGV, -signal.SIGBUS, -signal.SIGILL):
        return {"rejected": f"crashes the reader ({signal.Signals(-child.returncode).name})"}
    raise RuntimeError(f"{source_name}: the reader's process ended with code {child.returncode}: {error[-500:]}")


def _typed_source(outcome: dict, folder: Path) -> TypedSource:
    import polars as pl

    from include.retail.contract import TypedSheet

    def frame(name: str) -> pl.DataFrame:
        return pl.read_ipc(folder / name, memory_map=True)

    sheets = [
        TypedSheet(sheet["name"], rows=frame(sheet["rows"]), rejected=frame(sheet["rejected"]))
        for sheet in outcome["sheets"]
    ]
    return TypedSource(sheets=sheets, row_count=outcome["row_count"], encoding=outcome["encoding"])


def _child(request: dict) -> None:
    """In the child: read, scan for formulas without results (overlapped), type, and write the frames."""
    limit = request["max_memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    folder = Path(request["folder"])
    from include.retail.contract import FileRejected

    try:
        outcome = _read_and_type(Path(request["path"]), request["source_name"], request["layout"], folder)
    except MemoryError:
        sys.exit("MemoryError")
    except FileRejected as rejection:
        outcome = {"rejected": rejection.reason, "details": rejection.details}
    (folder / _RESULT).write_text(json.dumps(outcome, default=str))


def _read_and_type(path: Path, source_name: str, layout_request: dict, folder: Path) -> dict:
    from include.retail.contract import type_rows
    from include.retail.reader import read_source

    layout = WorkbookLayout({name: SheetPart(**part) for name, part in layout_request.items()})
    formulas: dict[str, list[tuple[int, int]]] = {}
    # zlib and bytes.find release the GIL: the scan runs on the other core while calamine reads.
    scans = [
        threading.Thread(
            target=lambda n=name, p=part: formulas.__setitem__(n, workbook_limits.unsaved_formulas(path, p))
        )
        for name, part in layout.sheets.items()
    ]
    for scan in scans:
        scan.start()
    contents = read_source(path, source_name, layout)
    for scan in scans:
        scan.join()
    sheets = []
    for number, sheet in enumerate(contents.sheets):
        cells = formulas.get(sheet.name or "", [])
        formulas_by_column = _by_column(cells, sheet, layout) if cells else None
        typed = type_rows(sheet.raw, sheet.written_as, formulas_by_column, sheet_name=sheet.name)
        names = {"name": sheet.name, "rows": f"rows-{number}.arrow", "rejected": f"rejected-{number}.arrow"}
        typed.rows.write_ipc(folder / names["rows"], compression="uncompressed")
        typed.rejected.write_ipc(folder / names["rejected"], compression="uncompressed")
        sheets.append(names)
    return {"sheets": sheets, "row_count": contents.row_count, "encoding": contents.encoding}


def _by_column(cells: list[tuple[int, int]], sheet: Sheet, layout: WorkbookLayout) -> dict[str, list[int]]:
    """Formula cells (row, column in the sheet) -> bronze column -> source rows."""
    first_column = layout.sheets[sheet.name].first_column
    position_of = {position: column for column, position in sheet.positions.items()}
    found: dict[str, list[int]] = {}
    for row, column in cells:
        bronze_column = position_of.get(column - first_column)
        if bronze_column:
            found.setdefault(bronze_column, []).append(row)
    return found


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
