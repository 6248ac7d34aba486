"""Issue 16.1: the atomic writers refuse special files and symlinks, keep modes, clean stale temporaries,
fsync the folder, report a full disk clearly, and survive kill -9 loops."""

import errno
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import mpx
from mpx import _io
from mpx._io import WriteError, atomic_write, atomic_write_bytes, atomic_write_text, check_target
from mpx.cli import main
from mpx.conformance import runner
from mpx.conformance.output_paths import check_writable
from mpx.training.checkpoint import load_checkpoint, save_checkpoint, write_checkpoint_file


def temporaries(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp"))


def test_a_fifo_is_refused_and_left_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(WriteError, match="FIFO"):
        atomic_write_text(fifo, "x")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    assert temporaries(tmp_path, "pipe") == []


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(mpx.MpxError, match="is a directory"):
        atomic_write_bytes(tmp_path, b"x")


def test_a_device_is_refused_without_writing():
    with pytest.raises(WriteError, match="is a device"):
        check_target("/dev/null")
    with pytest.raises(mpx.ConformanceError, match="is a device"):
        check_writable("/dev/null", "json report")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_symlink_is_refused_unless_followed(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    with pytest.raises(WriteError, match="symlink"):
        atomic_write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "old"
    atomic_write_text(link, "new", follow_symlinks=True)
    assert link.is_symlink() and real.read_text() == "new"


def test_an_existing_mode_is_kept_and_a_new_file_follows_the_umask(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("x")
    target.chmod(0o640)
    atomic_write_text(target, "y")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    umask = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "b.txt", "z")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o640


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        return real_fsync(fd)

    monkeypatch.setattr(_io.os, "fsync", recording)
    atomic_write_text(tmp_path / "a.txt", "x")
    assert synced == [False, True]


def test_stale_temporaries_of_this_target_only_are_cleaned(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".a.txt.{dead.pid}.abcd1234.tmp"
    live = tmp_path / f".a.txt.{os.getpid()}.abcd1234.tmp"
    old = tmp_path / ".a.txt.abcd1234.tmp"
    fresh = tmp_path / ".a.txt.wxyz9876.tmp"
    other = tmp_path / f".b.txt.{dead.pid}.abcd1234.tmp"
    unlike = tmp_path / f".a.txt.{dead.pid}.abcd1234.tmp.keep"
    for path in (stale, live, old, fresh, other, unlike):
        path.write_bytes(b"partial")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    atomic_write_text(tmp_path / "a.txt", "x")
    left = {p.name for p in tmp_path.iterdir()}
    assert stale.name not in left and old.name not in left
    assert {live.name, fresh.name, other.name, unlike.name, "a.txt"} == left


def test_disk_full_names_the_path_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def full(stream):
        stream.write(b"abc")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError) as caught:
        atomic_write(target, full)
    message = str(caught.value)
    assert "disk full" in message and str(target) in message and "3 bytes" in message and "\n" not in message
    assert caught.value.errno == errno.ENOSPC
    assert target.read_text() == "old" and temporaries(tmp_path, "a.txt") == []


def test_disk_full_at_fsync_gives_the_bytes_needed(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_io.os, "fsync", full)
    with pytest.raises(WriteError, match=r"disk full: .*a\.bin.* \(1000 bytes needed"):
        atomic_write_bytes(tmp_path / "a.bin", b"x" * 1000)


def test_disk_full_during_torch_save_is_a_checkpoint_error(tmp_path, monkeypatch):
    target = tmp_path / "c.pt"
    write_checkpoint_file(target, {"a": torch.zeros(4)})
    real_write = _io._Recorder.write

    def full(self, data):
        if self.written > 64:
            self.error = OSError(errno.ENOSPC, "No space left on device")
            raise self.error
        return real_write(self, data)

    monkeypatch.setattr(_io._Recorder, "write", full)
    with pytest.raises(mpx.CheckpointError, match="disk full") as caught:
        write_checkpoint_file(target, {"a": torch.zeros(100_000)})
    assert str(target) in str(caught.value)
    monkeypatch.undo()
    assert torch.load(target, weights_only=True)["a"].shape == (4,)
    assert temporaries(tmp_path, "c.pt") == []


def test_a_checkpoint_symlink_is_refused(tmp_path):
    (tmp_path / "real.pt").write_bytes(b"")
    (tmp_path / "link.pt").symlink_to(tmp_path / "real.pt")
    model = torch.nn.Linear(2, 2)
    with pytest.raises(mpx.CheckpointError, match="symlink"):
        save_checkpoint(tmp_path / "link.pt", model)
    write_checkpoint_file(tmp_path / "link.pt", {"x": 1}, follow_symlinks=True)
    assert (tmp_path / "link.pt").is_symlink()


@pytest.fixture
def no_case_may_run(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a case ran before the bad output path was reported")

    monkeypatch.setattr(runner, "run_case", forbidden)


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_conformance_refuses_a_special_output_before_any_case(tmp_path, no_case_may_run, capsys, kind):
    path = tmp_path / "out.json"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(tmp_path / "elsewhere.json")
    assert main(["conformance", "--backend", "cpu", "--op", "add", "--json", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and (kind if kind == "symlink" else "FIFO") in err
    assert stat.S_ISFIFO(path.lstat().st_mode) if kind == "fifo" else path.is_symlink()


def test_conformance_cli_process_exits_2_with_one_line_on_a_fifo(tmp_path):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    command = [sys.executable, "-m", "mpx", "conformance", "--backend", "cpu", "--op", "add", "--json", str(fifo)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "FIFO" in done.stderr and "Traceback" not in done.stderr
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


WRITER = textwrap.dedent(
    """
    import sys
    from mpx._io import atomic_write_bytes
    path, size = sys.argv[1], int(sys.argv[2])
    i = 0
    while True:
        i += 1
        atomic_write_bytes(path, i.to_bytes(8, "little") + bytes([i % 251]) * size)
    """
)


def valid(path, size):
    data = path.read_bytes()
    i = int.from_bytes(data[:8], "little")
    return len(data) == 8 + size and data[8:] == bytes([i % 251]) * size


def kill_loop(command, target, kills, ready_s=60.0):
    for round_ in range(kills):
        child = subprocess.Popen(command)
        try:
            deadline = time.monotonic() + ready_s
            before = target.stat().st_mtime_ns if target.exists() else None
            while not target.exists() or target.stat().st_mtime_ns == before:
                assert time.monotonic() < deadline, "the writer never finished a write"
                assert child.poll() is None, "the writer died on its own"
                time.sleep(0.01)
            time.sleep(0.02 + 0.037 * round_)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        yield


def test_kill_9_during_writes_leaves_a_valid_file_and_at_most_one_temporary(tmp_path):
    target, size = tmp_path / "big.bin", 8 << 20
    command = [sys.executable, "-c", WRITER, str(target), str(size)]
    for _ in kill_loop(command, target, kills=8):
        assert valid(target, size)
        assert len(temporaries(tmp_path, "big.bin")) <= 1


SAVER = textwrap.dedent(
    """
    import sys, torch
    from mpx.training.checkpoint import save_checkpoint
    model = torch.nn.Linear(512, 2048)
    step = 0
    while True:
        step += 1
        save_checkpoint(sys.argv[1], model, step=step)
    """
)


def test_kill_9_during_save_checkpoint_leaves_it_loadable(tmp_path):
    target = tmp_path / "ckpt.pt"
    for _ in kill_loop([sys.executable, "-c", SAVER, str(target)], target, kills=4):
        payload = load_checkpoint(target, torch.nn.Linear(512, 2048))
        assert payload["step"] >= 1
        assert len(temporaries(tmp_path, "ckpt.pt")) <= 1
