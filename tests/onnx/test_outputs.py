"""``onnx/outputs.py`` (spec 13.6): staged files appear together on commit, or not at all."""

from __future__ import annotations

import os

import pytest

from monoquant_np.onnx.outputs import Outputs, remove_pending


def _stage(outs, path, text):
    tmp = outs.stage(path)
    with open(tmp, "w") as f:
        f.write(text)
    return tmp


def test_commit_publishes_every_file_and_leaving_without_commit_publishes_none(tmp_path):
    with Outputs() as outs:
        a = _stage(outs, tmp_path / "a.onnx", "A")
        _stage(outs, tmp_path / "b.json", "B")
        assert os.path.basename(a).startswith(".mq-") and len(os.path.basename(a)) == len(".mq-12345678.tmp")
        assert outs.size(tmp_path / "a.onnx") == 1
    assert os.listdir(tmp_path) == []
    with Outputs() as outs:
        _stage(outs, tmp_path / "a.onnx", "A")
        _stage(outs, tmp_path / "b.json", "B")
        outs.commit()
    assert sorted(os.listdir(tmp_path)) == ["a.onnx", "b.json"] and (tmp_path / "b.json").read_text() == "B"


def test_remove_pending_deletes_temporaries_and_held_outputs(tmp_path):
    with Outputs(hold=True) as outs:
        _stage(outs, tmp_path / "a.onnx", "A")
        assert len(os.listdir(tmp_path)) == 1
        remove_pending()  # what a signal handler does before a staged file is published
        assert os.listdir(tmp_path) == []
    with Outputs(hold=True) as outs:
        _stage(outs, tmp_path / "a.onnx", "A")
        outs.commit()
        remove_pending()  # after the commit, before the command returned: held outputs go too
        assert os.listdir(tmp_path) == []
    with Outputs() as outs:
        _stage(outs, tmp_path / "a.onnx", "A")
        outs.commit()
    remove_pending()  # a finished, not held output is no longer pending
    assert os.listdir(tmp_path) == ["a.onnx"]


def test_held_outputs_are_removed_when_the_block_fails(tmp_path):
    with pytest.raises(BrokenPipeError), Outputs(hold=True) as outs:
        _stage(outs, tmp_path / "a.onnx", "A")
        outs.commit()
        raise BrokenPipeError  # e.g. printing the table after the commit
    assert os.listdir(tmp_path) == []
