import pytest
from BoneReconLib.errors import InputError
from BoneReconLib.staged_output import StagedOutput


def test_success_moves_files_into_place(tmp_path):
    out = tmp_path / "new" / "out"
    with StagedOutput(out) as staged:
        staged.path("a.txt").write_text("A")
        assert not (out / "a.txt").exists()  # not visible before the end
    assert (out / "a.txt").read_text() == "A"
    assert [p.name for p in out.iterdir()] == ["a.txt"]


def test_failure_removes_everything_it_created(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError):
        with StagedOutput(out) as staged:
            staged.path("a.txt").write_text("A")
            raise ValueError("boom")
    assert not out.exists()


def test_failure_keeps_earlier_results(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("old")
    with pytest.raises(ValueError):
        with StagedOutput(out) as staged:
            staged.path("a.txt").write_text("new")
            raise ValueError("boom")
    assert (out / "a.txt").read_text() == "old"
    assert [p.name for p in out.iterdir()] == ["a.txt"]


def test_file_announced_but_not_written_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="b.txt"):
        with StagedOutput(tmp_path / "out") as staged:
            staged.path("b.txt")
    assert not (tmp_path / "out").exists()


def test_unwritable_output(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="Cannot write to the output folder"):
        with StagedOutput(tmp_path / "file" / "out"):
            pass
    with pytest.raises(InputError, match="is not a folder"):
        with StagedOutput(tmp_path / "file"):
            pass
