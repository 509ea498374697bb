"""``videoattn demo`` shows all five papers: the default models, the per-paper report worded from the
run's numbers, and one ``videoattn visualize`` figure per paper."""

import json

from videoattn.demo import DEFAULT_MODELS, DEMO_MODELS, PAPERS, DemoSettings, paper_verdicts, render_markdown, run_demo

TINY = DemoSettings(num_videos=16, video_frames=8, video_size=32, num_frames=4, size=32, base_channels=8,
                    epochs=1, batch_size=8, lr=0.05)


def test_default_models_are_the_references_and_one_per_paper():
    assert set(DEFAULT_MODELS) == {"r2d", "nl", "tsm", "gta", "rnl", "sa_gsm", "rsa", "bat3d"}
    papers = {DEMO_MODELS[k].paper for k in DEFAULT_MODELS} - {"reference"}
    assert papers == set(PAPERS) == {"gta", "rnl", "sa_gsm", "rsa", "bat"}
    assert [k for k in DEFAULT_MODELS if not DEMO_MODELS[k].order_aware] == ["r2d", "nl"]
    # every other demo model still runs with --models, under its paper
    assert {"dnl", "tape", "gsm", "se_rnl", "bat"} <= set(DEMO_MODELS)


def _row(model, top1, pair, macs, seconds=10.0):
    spec = DEMO_MODELS[model]
    return {"model": model, "block": spec.block, "paper": spec.paper, "order_aware": spec.order_aware,
            "params": 1000, "macs": macs, "top1": top1, "top5": 1.0, "within_pair_top1": pair,
            "train_seconds": seconds}


def _report(rows):
    return {"models": rows, "class_pairs": [["a", "b"]], "synthetic": True, "dataset": "d", "num_classes": 8,
            "num_val_videos": 240, "majority_share": 0.125, "settings": {}, "total_seconds": 1.0,
            "figures": {}, "histories": {}}


def test_verdicts_follow_the_numbers():
    r2d, nl = _row("r2d", 0.45, 0.5, 100_000_000), _row("nl", 0.47, 0.52, 130_000_000)
    good = _row("gta", 0.97, 0.99, 110_000_000)
    text = " ".join(paper_verdicts(_report([r2d, nl, good]), good))
    assert "99.0% against 52.0% for the best order-blind model (nl), +47.0 points: borne out" in text
    assert "adds 10.0 M" in text and "0.33x NL's" in text and "cost less than NL is borne out" in text
    assert "97.0% against NL's 47.0% (+50.0 points)" in text
    # the same model with order-blind numbers and a higher cost: the verdicts turn
    bad = _row("gta", 0.48, 0.55, 160_000_000)
    text = " ".join(paper_verdicts(_report([r2d, nl, bad]), bad))
    assert "+3.0 points: not borne out in this run" in text and "is not borne out at this size" in text
    # RSA replaces convolutions: its cost is reported as a saving against the trunk
    rsa = _row("rsa", 0.9, 0.95, 90_000_000)
    assert "saves 10.0 M (-10.0%)" in " ".join(paper_verdicts(_report([r2d, nl, rsa]), rsa))
    # without twin classes there is nothing to say about order
    report = _report([r2d, nl, good])
    report["class_pairs"] = []
    assert "not measurable on this data" in paper_verdicts(report, good)[0]


def test_report_groups_models_by_paper():
    rows = [_row("r2d", 0.45, 0.5, 100_000_000), _row("nl", 0.47, 0.52, 130_000_000),
            _row("bat", 0.5, 0.51, 105_000_000), _row("bat3d", 0.9, 0.95, 108_000_000)]
    markdown = render_markdown(_report(rows))
    section = markdown.split("### BAT: Bilinear Attentional Transforms", 1)[1].split("## Figures", 1)[0]
    assert "*Claim:*" in section and "| bat | 1,000 | 105.0 M | 50.0% | 51.0% | 10 |" in section
    assert "bat is order-blind by construction" in section and "**bat3d**" in section
    assert "### GTA" not in markdown  # only papers with a model in the run
    assert "**References.** r2d" in markdown


def test_default_demo_reports_every_paper_with_its_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOATTN_CACHE", str(tmp_path / "cache"))
    report = run_demo(out=str(tmp_path / "out"), settings=TINY, log=lambda message: None)
    out = tmp_path / "out"
    assert [m["model"] for m in report["models"]] == list(DEFAULT_MODELS)
    for row in report["models"]:
        assert row["macs"] > 0 and row["paper"] == DEMO_MODELS[row["model"]].paper
    expected = {"gta": "gta_temporal_matrices.png", "rnl": "rnl_attention.png", "sa_gsm": "sa_gsm_gates.png",
                "rsa": "rsa_kernel.png", "bat3d": "bat3d_transform.png"}
    for model, name in expected.items():
        assert report["figures"][model] == name
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".figure-")]  # scratch folders removed
    markdown = (out / "report.md").read_text()
    for paper in PAPERS.values():
        assert f"### {paper.title}" in markdown and paper.look_at in markdown
    assert json.loads((out / "report.json").read_text())["figure_video"]


def test_other_models_draw_their_papers_figure(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOATTN_CACHE", str(tmp_path / "cache"))
    models = ["gsm", "se_rnl", "bat"]
    report = run_demo(models=models, out=str(tmp_path / "out"), settings=TINY, log=lambda message: None)
    for model in models:
        assert (tmp_path / "out" / report["figures"][model]).is_file()
