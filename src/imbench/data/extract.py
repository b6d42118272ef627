"""One safe extractor for every archive the downloads unpack (zip and tar, any compression), and
the same guards for containers that a library unpacks itself (an ``.xlsx`` workbook, an ``.npz``).

:func:`safe_extract` checks every member from the archive's directory before anything is written:
no absolute paths, no ``..``, no links pointing outside, the decompression-bomb limits of
:class:`Limits` and the free disk space. Links, devices and fifos are never created, non-selected
members are skipped, and members are copied in bounded chunks that stop once a member yields more
than it declared. :func:`check_zip_container` and :func:`check_npz` apply the member-size and ratio
limits (and, for ``.npz``, the arrays' declared shapes) before a library reads the file.

Every failure is one :class:`~imbench.data.fetch.DownloadError` naming the archive and the member.
"""

from __future__ import annotations

import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import DownloadError
from .fetch import log

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _unsafe_reason(name: str) -> str | None:
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in re.split(r"[\\/]+", name):
        return "a '..' component"
    return None


def _link_escapes(member: str, target: str) -> bool:
    if not target or _unsafe_reason(target) == "an absolute path":
        return True
    parts: list[str] = []
    for part in list(PurePosixPath(member).parent.parts) + re.split(r"[\\/]+", target):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return True
            parts.pop()
        else:
            parts.append(part)
    return False


def is_image_name(name: str) -> bool:
    """An image member worth extracting (not a macOS resource fork or a ``__MACOSX`` entry)."""
    p = PurePosixPath(name.replace("\\", "/"))
    return (
        p.suffix.lower() in IMAGE_SUFFIXES
        and not p.name.startswith("._")
        and "__MACOSX" not in p.parts
    )


def flatten_images(folder: str = "images") -> Callable[[str], str | None]:
    """A member selector keeping image members only, all in ``folder/`` under their base name."""

    def select(name: str) -> str | None:
        return (
            f"{folder}/{PurePosixPath(name.replace(chr(92), '/')).name}"
            if is_image_name(name)
            else None
        )

    return select


# Limits of the decompression-bomb guard (see safe_extract). Real members are images of a few MB,
# CSVs and workbooks; JPEG members barely compress, CSVs compress about tenfold.
MAX_MEMBER_BYTES = 512 << 20
MAX_RATIO = 100
RATIO_MIN_BYTES = 1 << 20
FREE_SPACE_MARGIN = 64 << 20
MAX_LINK_TARGET = 4096


@dataclass(frozen=True)
class Limits:
    """What :func:`safe_extract` accepts: the largest member (declared size, bytes), the largest
    uncompressed/compressed ratio of a member or of the whole archive (checked once the
    uncompressed size passes ``ratio_min_bytes``) and the free space to leave on the destination."""

    max_member_bytes: int = MAX_MEMBER_BYTES
    max_ratio: float = MAX_RATIO
    ratio_min_bytes: int = RATIO_MIN_BYTES
    free_space_margin: int = FREE_SPACE_MARGIN


@dataclass
class _Entry:
    name: str
    kind: str  # "file", "link", "dir" or "other" (device, fifo …)
    size: int = 0  # declared uncompressed size
    packed: int | None = None  # compressed size (zip)
    target: str | None = None  # link target (read later for zip symlinks)


def safe_extract(
    archive: str | Path,
    dest: str | Path,
    select: Callable[[str], str | None],
    discard: bool = True,
    duplicates: str = "error",
    limits: Limits | None = None,
) -> list[Path]:
    """Extract the members of a zip or tar archive chosen by ``select`` into ``dest``.

    ``select(member_name)`` returns the member's path relative to ``dest`` (e.g. flattened into
    ``images/``) or ``None`` to skip it. Everything is checked from the archive's directory before
    anything is written, and the first problem stops the whole extraction with one
    :class:`DownloadError` naming the archive and the member:

    - names: an absolute path or a ``..`` component; a link pointing outside the archive;
    - links, devices, fifos and folders are never created, and a link's body is never read whole
      (a zip symlink's target is read only when its declared size is at most 4 KiB);
    - decompression bombs: a selected member declaring more than ``limits.max_member_bytes``, a
      member (zip) or the whole archive whose uncompressed size exceeds ``limits.max_ratio`` times
      its compressed size (sizes over ``limits.ratio_min_bytes``);
    - space: the declared sizes of the selected members must fit in the destination's free space
      with ``limits.free_space_margin`` to spare;
    - while writing, every member is copied in bounded chunks and stopped as soon as it yields more
      bytes than it declared.

    Two members mapped to the same destination are an error (``duplicates="first"``: the first is
    kept and the rest are reported). Returns the extracted files. With ``discard`` (the archive was
    downloaded), an archive that is damaged or fails a check is deleted so that a rerun fetches it
    again; a lack of free space never deletes it.
    """
    if duplicates not in ("error", "first"):
        raise ValueError(f"duplicates={duplicates!r} is not 'error' or 'first'")
    archive, dest = Path(archive), Path(dest)
    limits = limits or Limits()
    if zipfile.is_zipfile(archive):
        reader = _ZipReader
    else:
        try:
            is_tar = tarfile.is_tarfile(archive)
        except OSError:
            is_tar = False
        if not is_tar:
            raise _corrupt(
                archive,
                "zip or tar",
                "no archive directory found: truncated or not an archive",
                discard,
            )
        reader = _TarReader
    out = []
    try:
        with reader(archive) as r:
            plan = _plan(archive, r.entries, select, dest, limits, duplicates, r.read_target)
            for name, rel in plan.items():
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                entry = r.by_name[name]
                with r.open(entry) as src:
                    _copy_bounded(src, target, entry.size, name)
                out.append(target)
    except _Refused as exc:
        raise _refused(archive, exc, discard) from None
    except reader.errors as exc:
        if isinstance(exc, OSError) and not isinstance(exc, tarfile.TarError) and exc.errno:
            raise  # a disk error while writing, not a damaged archive
        raise _corrupt(archive, reader.kind, exc, discard) from None
    return out


def check_zip_container(path: str | Path, limits: Limits | None = None) -> None:
    """Apply the member-size and ratio limits of :func:`safe_extract` to a file that a library
    will unpack itself (an ``.xlsx`` workbook is a zip); raise one :class:`DownloadError` naming the
    file and the member. A file that is not a zip is left to the library to reject."""
    path, limits = Path(path), limits or Limits()
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError):
        return
    try:
        for info in infos:
            _check_member(_Entry(info.filename, "file", info.file_size, info.compress_size), limits)
    except _Refused as exc:
        raise DownloadError(f"{path}: {exc}; refusing to read it") from None


def check_npz(path: str | Path, max_array_bytes: int, limits: Limits | None = None) -> None:
    """Guard an ``.npz`` (a zip of ``.npy`` arrays) before NumPy loads it.

    Every member must be a ``.npy`` array whose header declares a plain (non-object) dtype and a
    shape of at most ``max_array_bytes`` bytes, and whose declared uncompressed size matches that
    header (so loading allocates no more than it was checked for); the ratio limit of ``limits``
    applies to each member and to the whole file. The member-size limit is ``max_array_bytes``
    plus room for the header. Raises one :class:`DownloadError` naming the file and the member.
    """
    import numpy as np

    path = Path(path)
    limits = limits or Limits()
    header_room = 1 << 16
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DownloadError(f"{path}: not a readable .npz file ({exc})") from None
    with zf:
        infos = zf.infolist()
        entries = [_Entry(i.filename, "file", i.file_size, i.compress_size) for i in infos]
        member_limits = Limits(
            max_member_bytes=max_array_bytes + header_room,
            max_ratio=limits.max_ratio,
            ratio_min_bytes=limits.ratio_min_bytes,
            free_space_margin=0,
        )
        try:
            for e in entries:
                if not e.name.endswith(".npy") or _unsafe_reason(e.name):
                    raise _Refused(f"member {e.name!r} is not a .npy array")
            for e in entries:
                _check_member(e, member_limits)
            _check_total(path, entries, member_limits)
            for info in infos:
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(fh)
                    offset = fh.tell()
                if dtype.hasobject:
                    raise _Refused(f"member {info.filename!r} holds Python objects")
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                if nbytes > max_array_bytes:
                    raise _Refused(
                        f"member {info.filename!r} declares an array of {nbytes:,} bytes "
                        f"(shape {shape}), more than the {max_array_bytes:,} expected"
                    )
                if offset + nbytes != info.file_size:
                    raise _Refused(
                        f"member {info.filename!r} declares shape {shape} ({nbytes:,} bytes) "
                        f"but holds {info.file_size - offset:,} bytes of data"
                    )
        except _Refused as exc:
            raise DownloadError(f"{path}: {exc}; refusing to load it") from None
        except (ValueError, EOFError, zlib.error, zipfile.BadZipFile) as exc:
            raise DownloadError(f"{path}: not a readable .npz file ({exc})") from None


def _check_member(e: _Entry, limits: Limits) -> None:
    """The decompression-bomb limits of one member: declared size, then its inflation ratio."""
    if e.size > limits.max_member_bytes:
        raise _Refused(
            f"member {e.name!r} declares {e.size:,} bytes, more than the "
            f"{limits.max_member_bytes:,} allowed for one member"
        )
    if (
        e.packed is not None
        and e.size > limits.ratio_min_bytes
        and e.size > limits.max_ratio * max(e.packed, 1)
    ):
        raise _Refused(
            f"member {e.name!r} inflates {e.packed:,} bytes to {e.size:,} (ratio over "
            f"{limits.max_ratio:g}): a decompression bomb"
        )


def _check_total(archive: Path, entries: Sequence[_Entry], limits: Limits) -> None:
    """The ratio limit of the whole archive: all members' declared sizes against its file size."""
    total = sum(e.size for e in entries if e.kind == "file")
    packed = archive.stat().st_size
    if total > limits.ratio_min_bytes and total > limits.max_ratio * max(packed, 1):
        raise _Refused(
            f"its members declare {total:,} bytes in all from {packed:,} bytes of archive (ratio "
            f"over {limits.max_ratio:g}): a decompression bomb"
        )


class _Refused(Exception):
    """A member failed a check; ``keep`` says the archive itself is not at fault (disk space)."""

    def __init__(self, message: str, keep: bool = False):
        super().__init__(message)
        self.keep = keep


def _plan(
    archive: Path,
    entries: Sequence[_Entry],
    select: Callable[[str], str | None],
    dest: Path,
    limits: Limits,
    duplicates: str = "error",
    read_target: Callable[[_Entry], str] | None = None,
) -> dict[str, str]:
    """Check every entry (module notes of :func:`safe_extract`); return {member name: destination}."""
    plan: dict[str, str] = {}
    taken: dict[str, str] = {}
    skipped = []
    for e in entries:
        reason = _unsafe_reason(e.name)
        if reason:
            raise _Refused(f"member {e.name!r} has {reason}")
        if e.kind == "link":
            target = e.target if read_target is None else read_target(e)
            if _link_escapes(e.name, target or ""):
                raise _Refused(f"member {e.name!r} is a link to {target!r} outside the archive")
            continue  # links inside the archive are harmless, but never created
        if e.kind != "file":
            continue
        rel = select(e.name)
        if rel is None:
            continue
        if _unsafe_reason(rel):
            raise _Refused(f"member {e.name!r} maps to unsafe path {rel!r}")
        _check_member(e, limits)
        if rel in taken:
            if duplicates == "first":
                skipped.append(e.name)
                continue
            raise _Refused(f"members {taken[rel]!r} and {e.name!r} both extract to {rel!r}")
        taken[rel] = e.name
        plan[e.name] = rel
    _check_total(archive, entries, limits)
    need = sum(e.size for e in entries if e.name in plan)
    probe = dest
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if need + limits.free_space_margin > free:
        raise _Refused(
            f"extracting {len(plan)} member(s) needs {need:,} bytes (+{limits.free_space_margin:,} to "
            f"spare) but {probe} has {free:,} bytes free",
            keep=True,
        )
    if skipped:
        log(
            f"note: {archive}: skipped {len(skipped)} member(s) with the name of an earlier one, first {skipped[0]!r}"
        )
    return plan


def _copy_bounded(src, target: Path, declared: int, name: str) -> None:
    """Copy ``src`` to ``target`` in chunks; stop once it yields more than ``declared`` bytes.
    A copy that fails leaves no file at ``target``."""
    written = 0
    try:
        with open(target, "wb") as dst:
            while True:
                chunk = src.read(min(1 << 20, declared - written + 1))
                if not chunk:
                    break
                written += len(chunk)
                if written > declared:
                    raise _Refused(
                        f"member {name!r} holds more than the {declared:,} bytes it declares"
                    )
                dst.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


class _ZipReader:
    """A zip archive's entries (from its central directory) and their bodies."""

    kind = "zip"
    errors = (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError)

    def __init__(self, archive: Path):
        self.zf = zipfile.ZipFile(archive)
        self.infos = {}
        self.entries = []
        for info in self.zf.infolist():
            mode = info.external_attr >> 16
            kind = (
                "link"
                if stat.S_ISLNK(mode)
                else "dir"
                if info.is_dir()
                else "other"
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG)
                else "file"
            )
            self.entries.append(_Entry(info.filename, kind, info.file_size, info.compress_size))
            self.infos[info.filename] = info
        self.by_name = {e.name: e for e in self.entries}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zf.close()

    def open(self, entry: _Entry):
        return self.zf.open(self.infos[entry.name])

    def read_target(self, entry: _Entry) -> str:
        """A zip symlink's target is its body: read only when it declares at most 4 KiB."""
        if entry.size > MAX_LINK_TARGET:
            raise _Refused(
                f"member {entry.name!r} is a link whose target declares {entry.size:,} bytes"
            )
        with self.open(entry) as src:
            return src.read(MAX_LINK_TARGET + 1)[:MAX_LINK_TARGET].decode("utf-8", "replace")


class _TarReader:
    """A tar archive's entries (headers only: no member body is read) and their bodies."""

    kind = "tar"
    errors = (tarfile.TarError, EOFError, zlib.error, OSError)
    read_target = None  # a tar link's target is in its header

    def __init__(self, archive: Path):
        self.tf = tarfile.open(archive)
        self.members = {}
        self.entries = []
        for m in self.tf.getmembers():
            kind = "link" if (m.issym() or m.islnk()) else "file" if m.isfile() else "other"
            self.entries.append(
                _Entry(m.name, kind, m.size if m.isfile() else 0, None, m.linkname or None)
            )
            self.members[m.name] = m
        self.by_name = {e.name: e for e in self.entries}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.tf.close()

    def open(self, entry: _Entry):
        return self.tf.extractfile(self.members[entry.name])


def _refused(archive: Path, exc: _Refused, discard: bool) -> DownloadError:
    """The error for an archive that failed a check; a downloaded one is deleted (unless not at fault)."""
    if discard and not exc.keep:
        archive.unlink(missing_ok=True)
        return DownloadError(
            f"{archive}: {exc}; refusing to extract the archive, deleted it "
            "(rerun to download it again)"
        )
    return DownloadError(f"{archive}: {exc}; refusing to extract the archive")


def _corrupt(archive: Path, kind: str, exc: BaseException, discard: bool) -> DownloadError:
    """The error for a damaged archive; a downloaded one is deleted so that a rerun fetches it again."""
    if discard:
        archive.unlink(missing_ok=True)
        return DownloadError(
            f"{archive}: corrupt {kind} archive ({exc}); deleted it, rerun to download it again"
        )
    return DownloadError(f"{archive}: corrupt {kind} archive ({exc})")
