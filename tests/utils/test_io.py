import json
import os
import stat

import pytest

from videoattn.utils.io import atomic_write, atomic_write_json


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    path = tmp_path / "sub" / "m.json"
    atomic_write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_failed_write_leaves_old_content_and_no_temp_file(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(path, "w") as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["m.txt"]
