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
from collections.abc import Callable, Iterator
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from include.retail.ingest import workbook_limits
from include.retail.ingest.workbook_limits import SheetPart, WorkbookLayout

if TYPE_CHECKING:
    import polars as pl  # noqa: F401

    from include.retail.ingest.contract import TypedSheet
    from include.retail.ingest.sheets import Sheet
    from include.retail.ingest.value_rules import ValueRules

_PROJECT_ROOT = Path(__file__).resolve().parents[3]
_RESULT = "result.json"
_ERRORS = "errors.txt"
# read_typed waits for this many rows (or the end) before returning: a small file is read whole there.
_EAGER_ROWS = 50_000


def _default_value_rules() -> ValueRules:
    from include.retail.ingest.value_rules import ValueRules

    return ValueRules()


@dataclass(frozen=True)
class ReadLimits:
    """Bounds on what reading one file may cost; a file beyond any of them is rejected, naming the bound. And
    ``value_rules``, what its values may be, which the read applies as it types (a value beyond them rejects its row).

    The defaults let a 1,048,575-row workbook (Excel's limit) through with room to spare.
    """

    max_memory_mb: int = 2048
    """Memory (MiB, RLIMIT_DATA of the child process) the read and typing may use. Read in batches, the
    real workbook and a 1,048,575-row one both peak near 300 MB of resident memory (bench/bench_memory.py);
    the limit counts the address space the libraries reserve, which is larger."""

    max_seconds: float = 600
    """Wall-clock time the read and typing may take; the real workbook takes ~2 s."""

    max_uncompressed_mb: int = 2048
    """Size (MiB) a workbook may unpack to; the real workbook unpacks to 152, a 1,048,575-row one to ~300."""

    max_compression_ratio: int = 100
    """How many times a zip entry over 1 MiB may expand; worksheet XML expands ~8 times, a zip bomb 1000."""

    max_sheet_cells: int = workbook_limits.MAX_ROWS * 64
    """Cells a sheet's declared dimension may span (rows × columns): a full-height sheet 64 columns wide.
    A reader makes one dense grid of it, 32 bytes a cell before any text."""

    value_rules: ValueRules = field(default_factory=_default_value_rules)
    """What a value may be (``value_rules.ValueRules``: plausible ranges, declared date orders). It travels with the
    limits, from the task's Airflow Variables to the child process that types the rows; ``from_settings`` leaves it
    at its default (``ValueRules.from_settings`` reads its own Variables)."""

    @classmethod
    def from_settings(cls, setting: Callable[[str], str | None]) -> ReadLimits:
        """The limits ``setting`` (field name -> text, or None) overrides, the others at their default: settings
        arrive as text (Airflow Variables), so each is converted to its field's type."""
        overrides: dict[str, int | float] = {}
        for limit in fields(cls):
            if limit.name == "value_rules":
                continue
            value = setting(limit.name)
            if value is not None:
                kind = type(limit.default) if limit.default is not MISSING else float
                overrides[limit.name] = kind(float(value)) if kind is int else kind(value)
        return cls(**overrides)


class TypedSource:
    """A file's typed rows, batch by batch as the child reads them (``batches``), or whole (``sheets``).

    Only what the child has not yet written waits in the child: the parent holds one batch at a time, so
    memory follows the batch, not the file, and the caller can COPY one batch while the next is read.
    A file the child finishes within its first batch (every small file) is read whole before
    ``read_typed`` returns, so that its rejection, if any, is raised there.
    """

    def __init__(
        self, child: subprocess.Popen | None, folder: tempfile.TemporaryDirectory, source_name: str, limits: ReadLimits
    ) -> None:
        self._child = child
        self._folder = folder
        self._source_name = source_name
        self._limits = limits
        self._ready: list[TypedSheet] = []  # read from the child, not yet handed out
        self._whole: list[TypedSheet] | None = None
        self._outcome: dict | None = None
        self._timed_out = threading.Event()
        self._watchdog = threading.Timer(limits.max_seconds, self._kill_on_time)
        self._watchdog.daemon = True
        self._watchdog.start()
        self.rows_rejected = 0  # rejected rows read so far

    def _kill_on_time(self) -> None:
        self._timed_out.set()
        if self._child is not None:
            self._child.kill()

    def _read_one(self) -> bool:
        """Read the child's next batch into ``_ready``; False once the child is done (its outcome then known)."""
        if self._outcome is not None:
            return False
        line = self._child.stdout.readline()
        if line:
            announced = json.loads(line)
            folder = Path(self._folder.name)
            sheet = _typed_sheet(announced, folder)
            self.rows_rejected += sheet.rejected.height
            self._ready.append(sheet)
            return True
        self._child.wait()
        self._watchdog.cancel()
        self._outcome = _outcome(
            self._child, Path(self._folder.name), self._limits, self._source_name, self._timed_out.is_set()
        )
        self.close()
        if "rejected" in self._outcome:
            from include.retail.ingest import contract

            raise contract.FileRejected(self._source_name, self._outcome["rejected"], self._outcome.get("details"))
        return False

    def _read_ahead(self, rows: int) -> None:
        """Read until ``rows`` rows are waiting or the child is done."""
        while sum(sheet.rows.height + sheet.rejected.height for sheet in self._ready) < rows and self._read_one():
            pass

    def batches(self) -> Iterator[TypedSheet]:
        """The batches not yet handed out, as the child writes them; raises FileRejected when a later batch
        breaks the contract (the caller's transaction then holds the earlier ones: roll it back)."""
        if self._whole is not None:
            yield from self._whole
            return
        while self._ready or self._read_one():
            while self._ready:
                yield self._ready.pop(0)

    @property
    def sheets(self) -> list[TypedSheet]:
        """Every batch, each sheet's batches joined: the whole file in memory."""
        if self._whole is None:
            import polars as pl

            from include.retail.ingest.contract import TypedSheet

            by_name: dict[str | None, list[TypedSheet]] = {}
            for batch in self.batches():
                by_name.setdefault(batch.name, []).append(batch)
            self._whole = [
                TypedSheet(
                    name, rows=pl.concat([b.rows for b in parts]), rejected=pl.concat([b.rejected for b in parts])
                )
                for name, parts in by_name.items()
            ]
        return self._whole

    def _drain(self) -> None:
        """Read the rest of the file, keeping its batches for ``batches`` and ``sheets``."""
        if self._outcome is None and self._whole is None:
            self._ready = list(self.batches())

    @property
    def row_count(self) -> int:
        """Data rows read, typed or rejected (the whole file is read first)."""
        self._drain()
        return self._outcome["row_count"]

    @property
    def encoding(self) -> str | None:
        self._drain()
        return self._outcome["encoding"]

    def close(self) -> None:
        """Stop the child if it still runs, and remove its files (batches already read stay in memory)."""
        self._watchdog.cancel()
        if self._child is not None and self._child.poll() is None:
            self._child.kill()
            self._child.wait()
        if self._child is not None and self._child.stdout:
            self._child.stdout.close()
        self._folder.cleanup()


def read_typed(path: Path, source_name: str, limits: ReadLimits | None = None) -> TypedSource:
    """Read and type the file; raises contract.FileRejected (naming source_name) for anything that is the file's fault.

    Anything else (the child killed from outside, a bug) raises RuntimeError: the platform's fault, retried.
    The reading goes on in the child while the caller takes the batches (``TypedSource.batches``); a file
    whose first batch is all of it is read whole here.
    """
    from include.retail.ingest import contract

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
    folder = tempfile.TemporaryDirectory(prefix="typed-", dir=path.parent)
    request = {
        "path": str(path),
        "source_name": source_name,
        "max_memory_mb": limits.max_memory_mb,
        "layout": {name: asdict(part) for name, part in layout.sheets.items()},
        "folder": folder.name,
        "value_rules": limits.value_rules.as_request(),
    }
    source = TypedSource(_start_child(request), folder, source_name, limits)
    try:
        source._read_ahead(_EAGER_ROWS)
    except BaseException:
        source.close()
        raise
    return source


def _start_child(request: dict) -> subprocess.Popen:
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }
    with (Path(request["folder"]) / _ERRORS).open("wb") as errors:  # a file: a pipe left unread could block it
        return subprocess.Popen(
            [sys.executable, "-m", "include.retail.ingest.sandboxed_read", json.dumps(request)],
            env=environment,
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=str(_PROJECT_ROOT),
        )


def _outcome(child: subprocess.Popen, folder: Path, limits: ReadLimits, source_name: str, timed_out: bool) -> dict:
    """The child's result once it has ended, a rejection naming the limit it broke, or RuntimeError."""
    if timed_out:
        return {"rejected": f"takes longer than the {limits.max_seconds:,.0f} s allowed to read"}
    result = folder / _RESULT
    if child.returncode == 0 and result.is_file():
        return json.loads(result.read_text())
    stderr = (folder / _ERRORS).read_bytes() if (folder / _ERRORS).is_file() else b""
    error = workbook_limits.without_paths(Exception(stderr.decode(errors="replace").strip()[-2000:]))
    out_of_memory = "memory allocation of" in error or "MemoryError" in error or "Cannot allocate memory" in error
    if out_of_memory or child.returncode == -signal.SIGABRT:
        return {"rejected": f"needs more than the {limits.max_memory_mb:,} MB allowed to read"}
    if child.returncode in (-signal.SIGSEGV, -signal.SIGBUS, -signal.SIGILL):
        return {"rejected": f"crashes the reader ({signal.Signals(-child.returncode).name})"}
    raise RuntimeError(f"{source_name}: the reader's process ended with code {child.returncode}: {error[-500:]}")


def _typed_sheet(announced: dict, folder: Path) -> TypedSheet:
    """One batch the child announced, read into memory and its files removed (disk follows the batch too)."""
    import polars as pl

    from include.retail.ingest.contract import TypedSheet

    frames = {}
    for kind in ("rows", "rejected"):
        frames[kind] = pl.read_ipc(folder / announced[kind], memory_map=False)
        (folder / announced[kind]).unlink()
    return TypedSheet(announced["name"], rows=frames["rows"], rejected=frames["rejected"])


def _child(request: dict) -> None:
    """In the child: read, scan for formulas without results (overlapped), type, and write the frames."""
    limit = request["max_memory_mb"] << 20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    folder = Path(request["folder"])
    from include.retail.ingest.contract import FileRejected

    try:
        outcome = _read_and_type(
            Path(request["path"]), request["source_name"], request["layout"], folder, request["value_rules"]
        )
    except MemoryError:
        sys.exit("MemoryError")
    except FileRejected as rejection:
        outcome = {"rejected": rejection.reason, "details": rejection.details}
    (folder / _RESULT).write_text(json.dumps(outcome, default=str))


def _read_and_type(path: Path, source_name: str, layout_request: dict, folder: Path, rules_request: dict) -> dict:
    """Read and type batch by batch, announcing each batch's files on stdout as soon as they are written."""
    from include.retail.ingest.contract import type_rows
    from include.retail.ingest.reader import iter_batches
    from include.retail.ingest.sheets import BATCH_ROWS
    from include.retail.ingest.value_rules import ValueRules

    layout = WorkbookLayout({name: SheetPart(**part) for name, part in layout_request.items()})
    rules = ValueRules.from_request(rules_request)
    found, batches = iter_batches(path, source_name, layout, BATCH_ROWS, rules.declared_date_order(source_name))
    for number, batch in enumerate(batches):
        sheet = batch.sheet
        formulas_by_column = _by_column(batch.formulas, sheet, layout) if batch.formulas else None
        typed = type_rows(
            sheet.raw,
            sheet.written_as,
            formulas_by_column,
            sheet_name=sheet.name,
            row_faults=batch.row_faults,
            date_order=found.date_order,
            rules=rules,
        )
        names = {"name": sheet.name, "rows": f"rows-{number}.arrow", "rejected": f"rejected-{number}.arrow"}
        typed.rows.write_ipc(folder / names["rows"], compression="uncompressed")
        typed.rejected.write_ipc(folder / names["rejected"], compression="uncompressed")
        del typed, sheet, batch
        sys.stdout.write(json.dumps(names) + "\n")
        sys.stdout.flush()
    return {"row_count": found.row_count, "encoding": found.encoding}


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
