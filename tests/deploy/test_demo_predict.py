"""The demo's report says how to run ``videoattn predict`` on its best model, and that command works."""

from __future__ import annotations

import csv
import json
import shlex

from tests.test_demo import TINY
from videoattn.cli import main
from videoattn.demo import run_demo


def test_demo_report_gives_a_working_predict_command(tmp_path):
    from videoattn.data import generate_synthetic

    data = generate_synthetic(tmp_path / "mine", num_videos=16, frames=8, size=32, seed=1)
    out = tmp_path / "out"
    report = run_demo(data=str(data), models=["r2d"], out=str(out), settings=TINY, log=lambda message: None)
    command = report["predict"]["command"]
    assert report["predict"]["model"] == "r2d" and command in (out / "report.md").read_text()
    assert json.loads((out / "report.json").read_text())["predict"]["command"] == command
    argv = shlex.split(command)
    assert argv[:2] == ["videoattn", "predict"]
    assert main(argv[1:] + ["--no-progress"]) == 0
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 16 and all(row["status"] == "ok" for row in rows)
