"""File helpers: atomic writes with the umask's permissions, leftovers of killed writers removed,
file-system errors as one line naming the path, unreadable inputs named."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imbench import io
from imbench.io import (
    WriteError,
    atomic_path,
    read_csv,
    read_json,
    write_json,
    write_text,
    write_with,
)


def test_written_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        write_json(tmp_path / "b.json", {"a": 1})
        os.umask(0o027)
        write_text(tmp_path / "c.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "c.txt").stat().st_mode & 0o777 == 0o640


KILLED_WRITER = """
import os, sys
from imbench.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half")
    os._exit(9)   # killed: no cleanup runs
"""


def test_temporary_file_of_a_killed_writer_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "images.npy"
    env = {**os.environ, "PYTHONPATH": str(Path(io.__file__).parents[1])}
    subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], env=env)
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".images.")]
    assert len(leftovers) == 1 and not target.exists()
    with atomic_path(target) as tmp:
        # a live writer's temporary file is kept (this process's own)
        assert tmp.exists()
        tmp.write_bytes(b"full")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.npy"]


def test_temporary_files_of_other_hosts_are_kept(tmp_path):
    foreign = tmp_path / ".run.otherhost-1.abcd1234.tmp.json"
    foreign.write_text("{}")
    write_json(tmp_path / "run.json", {})
    assert foreign.exists()


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize(
    "err, words",
    [
        (errno.ENOSPC, "no space left on device"),
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EACCES, "permission denied"),
    ],
)
def test_file_system_errors_are_one_line_naming_the_path(tmp_path, err, words):
    target = tmp_path / "metrics.json"

    def fail(fh):
        raise OSError(err, os.strerror(err))

    with pytest.raises(WriteError) as info:
        write_with(target, fail, mode="w")
    msg = str(info.value)
    assert msg == f"{words} while writing {target}" and "\n" not in msg
    assert info.value.errno == err
    assert list(tmp_path.iterdir()) == []  # nothing half-written, no temporary file


def test_unwritable_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(
        io.tempfile,
        "mkstemp",
        lambda **kw: (_ for _ in ()).throw(PermissionError(errno.EACCES, "x")),
    )
    with pytest.raises(WriteError, match=f"permission denied while writing {tmp_path / 'a.txt'}"):
        write_text(tmp_path / "a.txt", "x")


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (needs root and mount; skipped elsewhere)."""
    mnt = tmp_path / "full"
    mnt.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_torch_checkpoint_on_a_full_disk_says_so(small_tmpfs):
    import functools

    import torch

    target = small_tmpfs / "checkpoint.pt"
    with pytest.raises(WriteError, match=f"no space left on device while writing {target}"):
        write_with(target, functools.partial(torch.save, {"w": torch.zeros(100_000)}))
    assert list(small_tmpfs.iterdir()) == []


def test_cli_reports_a_full_disk_in_one_line(tiny_synthetic, small_tmpfs, capsys):
    from imbench.cli import main

    rc = main(
        [
            "train",
            "--task",
            "synthetic",
            "--cache-dir",
            str(tiny_synthetic["cache"]),
            "--split",
            str(tiny_synthetic["split"]),
            "--model",
            "test_resnet",
            "--method",
            "ce",
            "--seed",
            "0",
            "--settings",
            '{"epochs": 1, "batch_size": 32, "image_size": 16}',
            "--threads",
            "1",
            "--out-dir",
            str(small_tmpfs / "cell"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith(
        f"imbench train: error: no space left on device while writing {small_tmpfs / 'cell'}"
    )


def test_corrupt_json_is_named(tmp_path):
    p = tmp_path / "metrics.json"
    p.write_text('{"a": 1,')
    with pytest.raises(ValueError, match=f"^{p}: not valid JSON"):
        read_json(p)


@pytest.mark.parametrize("text", ["", 'a,b\n1,2,3,4\n"x'])
def test_unreadable_csv_is_named(tmp_path, text):
    p = tmp_path / "predictions.csv"
    p.write_text(text)
    with pytest.raises(ValueError, match=f"^{p}: not a readable CSV table"):
        read_csv(p)


def test_full_disk_while_writing_the_log_names_the_log(small_tmpfs, tmp_path):
    """A job's log on a full disk: the one-line error (on stderr) names the log file."""
    log = small_tmpfs / "train.log"
    (small_tmpfs / "filler").write_bytes(b"x" * 60_000)
    code = (
        "import sys\nfrom imbench import cli\n"
        "def boom(args):\n    print('x' * 100_000, flush=True)\n"
        "cli._dispatch = boom\nsys.exit(cli.main(['synth', '--out', 'unused']))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(io.__file__).parents[1])}
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-c", code], stdout=out, stderr=subprocess.PIPE, text=True, env=env
        )
    assert proc.returncode == 2
    assert f"imbench synth: error: no space left on device while writing {log}" in proc.stderr
