"""Small file helpers: every output is written to a temporary name and renamed into place.

A later pipeline step trusts any file that exists, so a crash must never leave a
half-written one under the final name.

- Temporary names are ``.<stem>.<host>-<pid>.<random>.tmp<suffix>`` beside the final file. A
  process killed while writing (SIGKILL, pre-emption, power loss) cannot remove its temporary
  file; the next write of the same file on that host removes every such leftover whose process is
  gone (see :func:`remove_stale_temporaries`).
- Files get the usual permissions of a new file (``0o666`` minus the umask), not ``mkstemp``'s
  private ``0o600``.
- A full disk, an exceeded quota, a read-only file system or a permission problem is raised as
  :class:`WriteError`, an ``OSError`` whose message is one line naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import re
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# errno → the words of the one-line message (``WriteError``).
DISK_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large for the file system",
}


class WriteError(OSError):
    """A file could not be written for a reason of the file system (full, quota, permissions).

    ``str()`` is one line: ``<reason> while writing <path>``."""

    def __init__(self, err: int, path: str | os.PathLike):
        super().__init__(err, DISK_ERRORS.get(err, os.strerror(err)), str(path))

    def __str__(self) -> str:
        return f"{self.strerror} while writing {self.filename}"


def disk_error(exc: BaseException, path: str | os.PathLike) -> WriteError | None:
    """The :class:`WriteError` for ``exc`` when it is, or was raised while handling, a file-system
    error of :data:`DISK_ERRORS` (a library that fails again while cleaning up after the failed
    write, as ``torch.save`` does, hides the cause behind its own error)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, WriteError):
            return exc
        if isinstance(exc, OSError) and exc.errno in DISK_ERRORS:
            return WriteError(exc.errno, path)
        exc = exc.__cause__ or exc.__context__
    return None


def new_file_mode() -> int:
    """The permission bits of a newly created file: 0o666 minus the process's umask."""
    try:  # Linux ≥ 4.7 reports the umask without changing it
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"


def _tmp_pattern(path: Path, suffix: str) -> re.Pattern:
    return re.compile(
        rf"^\.{re.escape(path.stem)}\.(?P<host>[A-Za-z0-9_.-]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+"
        rf"\.tmp{re.escape(suffix)}$"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_stale_temporaries(path: str | os.PathLike, suffix: str | None = None) -> list[Path]:
    """Remove the temporary files of ``path`` left by processes of this host that no longer run.

    Temporary files of live processes, and of other hosts (a shared file system), are kept.
    Returns the removed paths."""
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    pattern, host, removed = _tmp_pattern(path, suffix), _host(), []
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        m = pattern.match(entry.name)
        if (
            m
            and m["host"] == host
            and int(m["pid"]) != os.getpid()
            and not _pid_alive(int(m["pid"]))
        ):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary file keeps the final suffix (so libraries that dispatch on it, such as
    ``np.save`` or ``matplotlib``, behave) and lives in the same directory (so the rename is atomic).
    """
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path, suffix)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.stem}.{_host()}-{os.getpid()}.", suffix=f".tmp{suffix}", dir=path.parent
        )
        os.fchmod(fd, new_file_mode())
        os.close(fd)
    except OSError as exc:
        err = disk_error(exc, path)
        if err is None:
            raise
        raise err from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        err = disk_error(exc, path)
        if err is not None and err is not exc:
            raise err from None
        raise


class _Sink:
    """A binary file object that writes every byte it is given or raises the ``OSError``.

    ``torch.save`` given a file name (or even a buffered file, whose short writes it misreads)
    reports a full disk as an unrelated ``RuntimeError``; through this sink the write error itself
    surfaces."""

    def __init__(self, path: Path):
        self._fd = os.open(path, os.O_WRONLY | os.O_TRUNC)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(self._fd, view) :]
        return memoryview(data).nbytes

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def write_with(path: str | os.PathLike, write: Callable, mode: str = "wb") -> None:
    """Atomically write ``path`` by calling ``write(fh)`` on an open file object.

    ``mode="wb"``: ``fh`` writes every byte or raises (see :class:`_Sink`), so a full disk during
    e.g. ``torch.save`` becomes a :class:`WriteError` naming ``path``. Other modes: ``open(tmp, mode)``."""
    with atomic_path(path) as tmp:
        fh = _Sink(tmp) if mode == "wb" else open(tmp, mode)
        try:
            write(fh)
        finally:
            fh.close()


def remove_orphans(path: str | os.PathLike, suffix: str | None = None) -> list[Path]:
    """Delete the temporary files that :func:`atomic_path` left beside ``path`` when its process was
    killed (``.<stem>.*.tmp<suffix>``); return them. Call it only where no other process can be
    writing ``path`` at the same time (a Snakemake job owns its outputs)."""
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    removed = []
    if path.parent.is_dir():
        for p in path.parent.glob(f".{glob.escape(path.stem)}.*.tmp{glob.escape(suffix)}"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_csv(path: str | os.PathLike, df, **kwargs) -> None:
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def read_json(path: str | os.PathLike):
    """Parse a JSON file; a file that is not valid JSON raises ``ValueError`` naming it."""
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def read_csv(path: str | os.PathLike, **kwargs):
    """``pandas.read_csv`` whose errors on an empty or malformed file name the file (``ValueError``)."""
    import pandas as pd

    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: not a readable CSV table ({detail})") from None


def _json_default(obj):
    # numpy scalars and arrays appear in metrics and settings; store them as plain JSON.
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")
