"""Ingest's private scratch folders: one per file handled, named by a hash of its key, locked while in use.

A folder is removed when its task is done, or by the next task's sweep when its process was killed (the lock
dies with the process). Local names never come from the key: a key may be ``..``, hold a slash-dot, or be
longer than a file name may be, and no local path shows in a message.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def scratch_root() -> Path:
    """Where ingest keeps its copies of inputs: one folder per file handled, removed when done."""
    return Path(tempfile.gettempdir()) / "retail-ingest"


def key_digest(key: str) -> str:
    """Local names come from this hash of the key, never from the key: a key may be ``..``, hold a
    slash-dot, or be longer than the 255 bytes a file name may have, and no local path shows in a message."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _sweep_abandoned(root: Path) -> None:
    """Remove the folders of tasks that died without cleaning up (SIGKILL, OOM kill, a lost worker).

    Each live folder holds an exclusive lock on its ``.lock`` file for as long as its task runs; the
    kernel releases it when the process dies, so a folder whose lock can be taken is abandoned.
    """
    for folder in root.iterdir():
        lock_path = folder / ".lock"
        try:
            with lock_path.open("a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(folder, ignore_errors=True)
        except BlockingIOError:
            continue  # a live task's folder
        except FileNotFoundError:
            # A folder without its lock: being created right now, or left half-removed. Wait a minute.
            if folder.is_dir() and time.time() - folder.stat().st_mtime > 60:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            log.warning("could not sweep the scratch folder %s", folder, exc_info=True)


@contextmanager
def scratch_folder(key: str) -> Iterator[Path]:
    """A private folder for one file's copy and whatever reading it writes, named by a hash of the key;
    removed on the way out, or by the next task's sweep if this process is killed."""
    root = scratch_root()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _sweep_abandoned(root)
    folder = Path(tempfile.mkdtemp(prefix=key_digest(key) + "-", dir=root))
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def local_name(key: str) -> str:
    """The copy's name: the key's hash, with the key's suffix when it is a plain one (.xlsx, .csv)."""
    suffix = Path(key).suffix.lower()
    return "input" + (suffix if suffix[1:].isalnum() and len(suffix) <= 8 else "")
