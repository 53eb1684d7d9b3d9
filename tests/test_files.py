"""Output files: complete or absent, readable as a plain open() would make them."""
import os
import stat

import pytest
import torch

from pyimagesearch import files
from pyimagesearch.checkpoint import save_model
from pyimagesearch.model import UNet, unet_arguments


@pytest.fixture
def umask():
    """``umask(mask)`` sets the process's umask until the test ends."""
    original = os.umask(0o022)
    os.umask(original)
    yield os.umask
    os.umask(original)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_written_files_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    files.write_text(str(tmp_path / "notes.txt"), "text")
    arguments = unet_arguments(num_levels=2, base_filters=4, size=(16, 16))
    save_model(str(tmp_path / "model.pth"), UNet(**arguments), arguments)
    with open(tmp_path / "plain.txt", "w") as handle:
        handle.write("as open() makes it")
    assert _mode(tmp_path / "plain.txt") == expected
    assert _mode(tmp_path / "notes.txt") == expected
    assert _mode(tmp_path / "model.pth") == expected


def test_model_files_reach_the_disk_before_they_take_the_name(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync")
        real_fsync(fd)

    def replace(source, target):
        events.append(("replace", os.path.getsize(source) > 0))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    arguments = unet_arguments(num_levels=2, base_filters=4, size=(16, 16))
    save_model(str(tmp_path / "model.pth"), UNet(**arguments), arguments)
    assert events == ["fsync", ("replace", True)]
    assert torch.load(tmp_path / "model.pth", weights_only=True)["format"]


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with files.atomic_path(str(tmp_path / "out.csv")) as temporary:
            with open(temporary, "w") as handle:
                handle.write("half")
            raise RuntimeError("crash while writing")
    assert os.listdir(tmp_path) == []


def test_an_interrupt_just_after_the_temporary_is_created_removes_it(tmp_path, monkeypatch):
    # Ctrl-C is raised between bytecodes; the last one that can leave a file
    # behind is the one right after the file is created
    real_close = os.close

    def close_then_interrupt(fd):
        real_close(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "close", close_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        with files.atomic_path(str(tmp_path / "plot.png")):
            pass
    assert os.listdir(tmp_path) == []


def test_a_temporary_name_taken_already_is_left_alone(tmp_path, monkeypatch):
    names = iter([str(tmp_path / ".out.taken.tmp.csv"), str(tmp_path / ".out.free.tmp.csv")])
    monkeypatch.setattr(files, "_temporary_name", lambda *parts: next(names))
    (tmp_path / ".out.taken.tmp.csv").write_text("another writer's")
    files.write_text(str(tmp_path / "out.csv"), "mine")
    assert sorted(os.listdir(tmp_path)) == [".out.taken.tmp.csv", "out.csv"]
    assert (tmp_path / "out.csv").read_text() == "mine"
