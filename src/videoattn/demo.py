"""``videoattn demo``: train and compare temporal modelling on the embedded temporal-reasoning dataset.

The demo trains, through the same engine as ``videoattn train`` / ``videoattn test``, a set of small
CPU-sized R2D-18 models that differ only in their temporal modelling: three references (none, NL,
TSM) and one model per paper (GTA, RNL, SA-GSM, RSA, 3D BAT), evaluates each on the validation split
and writes a report grouped by paper, with each paper's ``videoattn visualize`` figure of its trained
model.

The data (``videoattn.data.synthetic``) has classes in time-reversed pairs whose appearance is
independent of the class, so a model blind to frame order (R2D, NL and DNL with average consensus)
cannot beat 50% within a pair, while a model that sees order can approach 100%: GTA's central
argument, measured rather than asserted. The report gives overall top-1/top-5 and the *within-pair*
accuracy: among validation videos whose prediction falls in the right pair, how often it is the
right member of the pair (50% for an order-blind model, whatever it learned about appearance).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine.precision import PRECISIONS
from .errors import ConfigError, DataError


@dataclass(frozen=True)
class DemoModel:
    """One contestant: a short ``key``, the registry name of its temporal block, the model preset and
    its option overrides; ``paper``: the :data:`PAPERS` key it belongs to (``"reference"`` for the
    baselines); ``order_aware``: whether its temporal modelling can tell a clip from the same clip
    reversed (False for models that are invariant to permuting the frames)."""

    key: str
    block: str
    preset: str
    options: dict = field(default_factory=dict)
    description: str = ""
    paper: str = "reference"
    order_aware: bool = True
    #: whether the run draws its paper's figure (:attr:`DemoPaper.figure_kind`) for this model
    figure: bool = False


@dataclass(frozen=True)
class DemoPaper:
    """One of the five papers: what it claims about temporal modelling (in our words), the kind of
    ``videoattn visualize`` figure that shows its block, the file the demo writes, what to look at
    in it, and whether the paper claims to cost less than the Non-local block it is compared with."""

    title: str
    claim: str
    figure_kind: str
    figure_name: str
    look_at: str
    cheaper_than_nl: bool = False


PAPERS: dict[str, DemoPaper] = {
    "gta": DemoPaper(
        "GTA: Global Temporal Attention (He, Yang et al.)",
        "dot-product attention over flattened space-time is blind to frame order; spatial attention followed "
        "by a learned, input-independent T x T temporal matrix models time better, for fewer MACs than NL.",
        "gta-matrices", "temporal_matrices",
        "each learned T x T matrix (|M| averaged over groups and heads; row = output frame, column = input "
        "frame): weight away from the diagonal and asymmetric rows mean the block mixes frames in an "
        "order-dependent way; a matrix with equal rows would be order-blind.", cheaper_than_nl=True),
    "rnl": DemoPaper(
        "RNL: Region-based Non-local (Huang and Bors)",
        "attending between neighbourhood regions rather than single positions captures long-range "
        "dependencies better than the Non-local block, and more economically (two projections and a channel-wise "
        "region aggregation instead of NL's four projections); the regions span neighbouring frames.",
        "attention", "attention",
        "for each reference point (+), the weight of every key region in every frame (red = more): attention "
        "that changes from frame to frame, rather than the same map in every frame, is what the regions' "
        "temporal extent adds to NL.", cheaper_than_nl=True),
    "sa_gsm": DemoPaper(
        "SA-GSM: Self-Attention Gate-Shift (Cappuccio and Paliotta)",
        "a learned, spatially gated temporal shift (GSM) combined with self-attention within frames captures "
        "spatio-temporal context across frames at little computational cost.",
        "attention", "gates",
        "the gates tanh(W*X) of the two channel halves in each frame: red where features are shifted to the "
        "neighbouring frame, blue where they are shifted negated, pale where the block leaves them in place; "
        "gates that follow the moving object show the shift is spatially selective, unlike TSM's."),
    "rsa": DemoPaper(
        "RSA: Relational Self-Attention (Kim et al.)",
        "a convolution's fixed kernel and self-attention both miss motion; predicting each position's space-time "
        "kernel from the query-key relations (and aggregating relational context) captures it.",
        "rsa", "kernel",
        "the kernel predicted for the query (+) over its space-time neighbourhood, averaged over heads (red adds "
        "the neighbour's value, blue subtracts it): a kernel that differs between the frames before and after "
        "the query is a motion-sensitive filter a plain convolution would have to learn once for all clips."),
    "bat": DemoPaper(
        "BAT: Bilinear Attentional Transforms (Chi et al.)",
        "data-adaptive bilinear transforms (P X Q per group, and along time for 3D BAT) model long-range "
        "dependencies with cheap matrix products, more efficiently than the Non-local block.",
        "bat", "transform",
        "the re-projected attention W = P^T A Q^T of each group in each frame (red = more weight): where each "
        "group looks; groups that attend to different parts of the moving object share the work.",
        cheaper_than_nl=True),
}

# R2D-18 presets (stem width ``base_channels``); the attention presets put one block after res3 block 1
# and one after res4 block 1 (see videoattn.models.presets_attention).
DEMO_MODELS: dict[str, DemoModel] = {
    "r2d": DemoModel("r2d", "none", "r2d18", {}, "per-frame 2D CNN, average over time", order_aware=False),
    "tsm": DemoModel("tsm", "tsm", "r2d18", {"variant": "tsm"}, "temporal shift in every residual block"),
    "nl": DemoModel("nl", "nl", "r2d18_nl", {}, "space-time non-local", order_aware=False),
    "dnl": DemoModel("dnl", "dnl", "r2d18_dnl", {}, "decoupled spatial + temporal self-attention", paper="gta",
                     order_aware=False),
    "tape": DemoModel("tape", "tape", "r2d18_tape", {}, "spatial attention + temporal attention with a learned "
                      "positional embedding", paper="gta"),
    # 4 groups (not the paper's 8): the demo's narrow res3 has an inner width of 8 channels.
    "gta": DemoModel("gta", "gta", "r2d18_gta", {"block_options": {"num_groups": 4}},
                     "spatial attention + global temporal attention", paper="gta", figure=True),
    # RSA replaces conv2 of res3 block 1 and res4 block 1 (those blocks from scratch), default 5x7x7.
    "rsa": DemoModel("rsa", "rsa", "r2d18_rsa", {}, "relational self-attention in place of two 3x3 convs",
                     paper="rsa", figure=True),

    # RNL (3x3x3 regions: the demo's maps are small) and RNL's SE+RNL attention chain, same two sites.
    "rnl": DemoModel("rnl", "rnl", "r2d18", {"blocks": [{"name": "rnl", "plan": "res3: 1; res4: 1",
                                                          "options": {"kernel_size": [3, 3, 3]}}]},
                     "region-based non-local: affinity between 3x3x3 regions", paper="rnl", figure=True),
    "se_rnl": DemoModel("se_rnl", "chain", "r2d18", {"blocks": [{
        "name": "chain", "plan": "res3: 1; res4: 1",
        "options": {"blocks": ["se_add", {"name": "rnl", "options": {"kernel_size": [3, 3, 3]}}]}}]},
                        "RNL's attention chain: additive SE, then region-based non-local", paper="rnl", figure=True),

    # 2D / 3D BAT at the same two sites. The demo's 32 px clips give 4x4 maps at res3 and 2x2 at res4,
    # and one option must divide both into s x s blocks: s = 2 (the paper's s = 7 needs 7 | H). 3D BAT
    # keeps tk = 4 and ts = T = 8. 2D BAT works within each frame: with average consensus it cannot
    # tell a clip from its reverse.
    "bat": DemoModel("bat", "bat", "r2d18", {"blocks": [{"name": "bat", "plan": "res3: 1; res4: 1",
                                                          "options": {"s": 2}}]},
                     "2D bilinear attention transform: grouped P X Q per frame", paper="bat", order_aware=False,
                     figure=True),
    "bat3d": DemoModel("bat3d", "bat3d", "r2d18", {"blocks": [{"name": "bat3d", "plan": "res3: 1; res4: 1",
                                                              "options": {"s": 2}}]},
                       "3D bilinear attention transform: 2D BAT, then a predicted T x T along time", paper="bat",
                       figure=True),

    # GSM / SA-GSM where TSM shifts: before conv1 of every residual block. GSM is a learned, gated
    # replacement of TSM's fixed shift (Sudhakaran et al. compare it with TSM at this granularity), and
    # this site sees the block input, already batch-normalised, so the gate needs no BN of its own
    # (gate_norm is for BN-Inception's pre-BN site). All 8 blocks, as TSM, so the two differ only in
    # the shift being gated and learned.
    "gsm": DemoModel("gsm", "gsm", "r2d18", {"blocks": [{"name": "gsm", "plan": "all", "position": "before_conv1"}]},
                     "gate-shift module before conv1 of every residual block", paper="sa_gsm", figure=True),
    "sa_gsm": DemoModel("sa_gsm", "sa_gsm", "r2d18",
                        {"blocks": [{"name": "sa_gsm", "plan": "all", "position": "before_conv1"}]},
                        "gate-shift + SAGAN frame attention before conv1 of every residual block", paper="sa_gsm",
                        figure=True),
}

# The default comparison: three references (no temporal modelling, order-blind attention, a fixed
# shift) and one model per paper. The other models join with --models (e.g. --models r2d,dnl,tape,gsm).
DEFAULT_MODELS = ("r2d", "nl", "tsm", "gta", "rnl", "sa_gsm", "rsa", "bat3d")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run: ``default`` (about 10 minutes on 2 CPU cores for the eight default
    models, dataset cached) and ``quick`` (about 4 minutes); the README has the measured times."""

    num_videos: int
    video_frames: int
    video_size: int
    num_frames: int
    size: int
    base_channels: int
    epochs: int
    batch_size: int
    lr: float
    #: ``train.precision`` of every model (training and evaluation): ``fp32`` or ``bf16`` autocast.
    precision: str = "fp32"

    @classmethod
    def preset(cls, quick: bool) -> DemoSettings:
        if quick:
            return cls(num_videos=480, video_frames=24, video_size=40, num_frames=8, size=32, base_channels=16,
                       epochs=22, batch_size=16, lr=0.05)
        return cls(num_videos=960, video_frames=32, video_size=48, num_frames=8, size=32, base_channels=16,
                   epochs=30, batch_size=16, lr=0.05)


def default_cache_dir() -> Path:
    root = os.environ.get("VIDEOATTN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "videoattn")
    return Path(root)


def ensure_synthetic_dataset(settings: DemoSettings, seed: int, cache_dir: Path | None = None,
                             log: Callable[[str], None] = print) -> Path:
    """Generate the synthetic dataset for ``settings``/``seed`` into the cache, or reuse it.

    The dataset is generated in a temporary folder and renamed into place when complete, so an
    interrupted generation is never mistaken for a finished one.
    """
    from .data import generate_synthetic
    from .data.synthetic import GENERATOR_VERSION
    from .utils.io import current_umask

    cache_dir = cache_dir or default_cache_dir()
    key = f"n{settings.num_videos}-f{settings.video_frames}-s{settings.video_size}-seed{seed}"
    target = cache_dir / f"synthetic-v{GENERATOR_VERSION}-{key}"
    if (target / "synthetic.json").is_file():
        log(f"using the cached synthetic dataset {target}")
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=cache_dir))
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp makes 0700: the cache gets the usual permissions
    log(f"generating the synthetic dataset ({settings.num_videos} videos) into {target}")
    try:
        generate_synthetic(staging, num_videos=settings.num_videos, frames=settings.video_frames,
                           size=settings.video_size, seed=seed, format="webm", workers=min(2, os.cpu_count() or 1))
        if target.exists():  # another process finished first: keep theirs
            shutil.rmtree(staging)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _dataset_files(data_dir: Path) -> dict[str, Path]:
    files = {name: data_dir / f"{name}.json" for name in ("labels", "train", "validation")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise DataError(
            f"--data {data_dir}: expected the Something-Something-v2 layout (labels.json, train.json, "
            f"validation.json and the videos); missing {', '.join(missing)}"
        )
    videos = data_dir / "videos"
    files["root"] = videos if videos.is_dir() else data_dir
    return files


#: Antonyms whose exchange turns a class into its mirrored or time-reversed twin, in priority order (a
#: class joins at most one pair: "Pushing something from left to right" pairs with "... right to
#: left", not with "Pulling something from left to right"). Phrases are matched as whole words.
ANTONYMS: tuple[tuple[str, str], ...] = (
    ("left", "right"), ("up", "down"), ("towards", "away from"), ("closer to", "away from"),
    ("clockwise", "counterclockwise"), ("appearing", "disappearing"), ("opening", "closing"),
    ("covering", "uncovering"), ("folding", "unfolding"), ("plugging", "unplugging"),
    ("in front of", "behind"), ("into", "out of"), ("pushing", "pulling"), ("putting", "taking"),
)


def _exchange(name: str, first: str, second: str) -> str:
    """``name`` (lower case) with every whole-word ``first`` and ``second`` exchanged."""
    import re

    pattern = re.compile(r"\b(" + re.escape(first) + "|" + re.escape(second) + r")\b")
    return pattern.sub(lambda m: second if m.group(0) == first else first, name)


def infer_class_pairs(classes: Sequence[str]) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of classes whose names differ by one antonym (:data:`ANTONYMS`).

    Two classes pair when exchanging one antonym pair in one name (every occurrence, so "from left to
    right" becomes "from right to left") gives the other name exactly, ignoring case. Each class is
    in at most one pair, the first antonym in :data:`ANTONYMS` order winning.
    """
    lowered = [" ".join(str(name).lower().split()) for name in classes]
    index = {name: i for i, name in enumerate(lowered)}
    paired: set[int] = set()
    pairs = []
    for first, second in ANTONYMS:
        for i, name in enumerate(lowered):
            if i in paired:
                continue
            j = index.get(_exchange(name, first, second))
            if j is not None and j != i and j not in paired:
                pairs.append((min(i, j), max(i, j)))
                paired.update((i, j))
    return sorted(pairs)


def _pairs_of(data_dir: Path, classes: Sequence[str]) -> tuple[list[tuple[int, int]], str]:
    """Twin class pairs and where they come from: the synthetic generator's record
    (``synthetic.json``), else inferred from the class names (:func:`infer_class_pairs`)."""
    path = data_dir / "synthetic.json"
    if path.is_file():
        with open(path, encoding="utf-8") as handle:
            pairs = json.load(handle).get("pairs", [])
        index = {name: i for i, name in enumerate(classes)}
        return [(index[a], index[b]) for a, b in pairs if a in index and b in index], "synthetic.json"
    return infer_class_pairs(classes), "class names"


def within_pair_accuracy(confusion: Sequence[Sequence[int]], pairs: Sequence[tuple[int, int]]) -> float | None:
    """Among videos of paired classes predicted inside their own pair, the fraction predicted as the
    right member. ``confusion[true][predicted]``. None when no such video exists."""
    right = wrong = 0
    for a, b in pairs:
        right += confusion[a][a] + confusion[b][b]
        wrong += confusion[a][b] + confusion[b][a]
    return right / (right + wrong) if right + wrong else None


def _read_confusion(path: Path) -> list[list[int]]:
    import csv

    with open(path, encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    # First row and first column are class names (see engine.evaluation).
    return [[int(float(v)) for v in row[1:]] for row in rows[1:]]


def _config_for(model: DemoModel, settings: DemoSettings, files: dict[str, Path], work_dir: Path, seed: int):
    from .config import config_from_dict

    options = {"base_channels": settings.base_channels, **model.options}
    return config_from_dict({
        # NCHW pinned: the demo's numbers (README) are the same on every CPU (``auto`` would be channels-last
        # on AVX-512 CPUs, 1.2-1.3x faster steps there but float32 sums rounded differently).
        "model": {"name": model.preset, "num_frames": settings.num_frames, "dropout": 0.2, "options": options,
                  "channels_last": False},
        "data": {
            "format": "ssv2", "root": str(files["root"]), "train_annotations": str(files["train"]),
            "val_annotations": str(files["validation"]), "labels": str(files["labels"]),
            "size": settings.size, "scale_size": round(settings.size * 8 / 7), "flip": "none",
            # Small videos, many epochs, six models: each video is decoded once in this process
            # (warm_decoded_cache) and kept in memory; the loader worker forked for each model inherits
            # those frames and does the sampling, crops and normalisation off the training process's
            # hot path (clips are identical to uncached, in-process loading).
            "num_workers": 1, "options": {"cache_decoded": True},
        },
        "train": {
            "work_dir": str(work_dir), "epochs": settings.epochs, "batch_size": settings.batch_size,
            "lr": settings.lr, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "cosine",
            "warmup_epochs": 1, "clip_grad_norm": 20.0, "seed": seed, "precision": settings.precision,
            # About six validation points for the curves (the last epoch is always validated).
            "val_interval": max(1, settings.epochs // 6),
            "progress": False, "log_interval": 10**9,
        },
        "eval": {"views": "1x1", "batch_size": 32},
    })


def warm_decoded_cache(config) -> None:
    """Decode every training and validation video once into this process's frame cache, so that the
    loader workers forked afterwards (one set per model) start with all frames in memory."""
    from .engine.builders import build_dataset_for

    for split in ("train", "val"):
        dataset = build_dataset_for(config, split)
        for index in range(len(dataset)):
            dataset[index]  # a bad video is recorded by the dataset and skipped later, as in training


def _figure_video(config) -> str | None:
    """The validation video the per-paper figures are drawn on: the first readable one (the same for
    every model of the run)."""
    from .engine.builders import build_dataset_for

    dataset = build_dataset_for(config, "val")
    for record in dataset.records:
        if not record.error and Path(record.path).exists():
            return str(record.path)
    return None


def _paper_figure(spec: DemoModel, config, model, video: str | None, out_dir: Path,
                  log: Callable[[str], None]) -> str | None:
    """Draw ``spec``'s paper figure with ``videoattn visualize`` on the trained ``model``, as
    ``<model>_<figure>.png`` in ``out_dir``; returns the file name (None, logged, when it cannot)."""
    from .errors import VideoAttnError
    from .visualize import visualize

    paper = PAPERS[spec.paper]
    name = f"{spec.key}_{paper.figure_name}.png"
    if video is None and paper.figure_kind != "gta-matrices":
        log(f"    (no {paper.figure_kind} figure: no readable validation video to draw it on)")
        return None
    scratch = Path(tempfile.mkdtemp(prefix=".figure-", dir=out_dir))
    try:
        written = visualize(paper.figure_kind, config, model=model, video=video, out=scratch, progress=False)
        wanted = "gsm_gates.png" if spec.block in ("gsm", "sa_gsm") else None
        chosen = [p for p in written if wanted is None or p.name == wanted]
        if not chosen:
            raise VideoAttnError(f"visualize {paper.figure_kind} wrote {[p.name for p in written]}, not {wanted}")
        os.replace(chosen[0], out_dir / name)
    except VideoAttnError as error:
        log(f"    (no {paper.figure_kind} figure for {spec.key}: {error})")
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return name


def run_demo(quick: bool = False, data: str | None = None, models: Sequence[str] | None = None,
             out: str = "demo-output", seed: int = 0, settings: DemoSettings | None = None,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo and write ``report.json``, ``report.md`` and figures into ``out``.

    Returns the report (the content of ``report.json``). Like NCHW and fp32 (``_config_for``), the
    blocks' CPU projection layout is pinned (batched products, ``blocks._attention.fixed_projection_layout``):
    the oneDNN layout some CPUs take by default rounds float32 sums differently, and at the demo's widths
    RNL's outcome turns on such rounding (docs/blocks.md), so the README's figures hold on every CPU.
    """
    from .blocks._attention import fixed_projection_layout

    with fixed_projection_layout("bmm"):
        return _run_demo(quick, data, models, out, seed, settings, log)


def _run_demo(quick: bool, data: str | None, models: Sequence[str] | None, out: str, seed: int,
              settings: DemoSettings | None, log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from .analysis.complexity import count_macs
    from .analysis.plots import plot_accuracy, plot_curves
    from .engine import evaluate, train
    from .engine.builders import build_model
    from .engine.checkpoint import load_checkpoint, load_model_weights
    from .utils.io import atomic_write_json, atomic_write_text

    keys = list(models) if models else list(DEFAULT_MODELS)
    unknown = [k for k in keys if k not in DEMO_MODELS]
    if unknown:
        raise ConfigError(f"--models: unknown model(s) {', '.join(unknown)}; choose from {', '.join(DEMO_MODELS)}")
    settings = settings or DemoSettings.preset(quick)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data_dir = Path(data) if data else ensure_synthetic_dataset(settings, seed, log=log)
    files = _dataset_files(data_dir)

    rows, histories, paper_figures = [], {}, {}
    classes: list[str] = []
    figure_video: str | None = None
    pairs: list[tuple[int, int]] | None = None
    pairs_source = ""
    num_val_videos, majority_share = 0, 0.0
    for position, key in enumerate(keys, start=1):
        spec = DEMO_MODELS[key]
        work_dir = out_dir / "runs" / key
        if work_dir.exists():
            shutil.rmtree(work_dir)  # a fresh run each time: the report describes this run only
        config = _config_for(spec, settings, files, work_dir, seed)
        log(f"[{position}/{len(keys)}] {key}: {spec.description}")

        def on_event(event: str, record: dict, key=key) -> None:
            if event == "epoch":
                val = f", val top-1 {record['val_top1']:.1f}%" if record.get("val_top1") is not None else ""
                log(f"    epoch {record['epoch']}/{settings.epochs}: loss {record['train_loss']:.3f}, "
                    f"train top-1 {record['train_top1']:.1f}%{val} ({record['seconds']:.0f}s)")

        if position == 1:
            warm_decoded_cache(config)
        tic = time.perf_counter()
        result = train(config, callbacks=[on_event])
        train_seconds = time.perf_counter() - tic
        metrics = evaluate(config, str(result.last_checkpoint), views="1x1", output_dir=work_dir / "eval")
        confusion = _read_confusion(Path(metrics["files"]["confusion_matrix"]))
        if pairs is None:  # the same dataset for every model: read its pairs and class counts once
            classes = result.classes
            pairs, pairs_source = _pairs_of(data_dir, classes)
            per_class = [sum(row) for row in confusion]
            num_val_videos = sum(per_class)
            majority_share = max(per_class) / num_val_videos if num_val_videos else 0.0
        state = load_checkpoint(result.last_checkpoint)
        model = build_model(config.model, len(classes), pretrained=False)
        load_model_weights(model, state, source=str(result.last_checkpoint))
        macs = count_macs(model, torch.zeros(1, 3, settings.num_frames, settings.size, settings.size))
        if spec.figure:
            figure_video = figure_video or _figure_video(config)
            name = _paper_figure(spec, config, model, figure_video, out_dir, log)
            if name:
                paper_figures[key] = name
        rows.append({
            "model": key, "block": spec.block, "paper": spec.paper, "order_aware": spec.order_aware,
            "params": sum(p.numel() for p in model.parameters()), "macs": macs,
            "top1": metrics["top1"] / 100.0, "top5": metrics["top5"] / 100.0,
            "within_pair_top1": within_pair_accuracy(confusion, pairs) if pairs else None,
            "train_seconds": round(train_seconds, 1),
            "config": str(work_dir / "config.yaml"), "checkpoint": str(result.last_checkpoint),
        })
        histories[key] = [{"epoch": r["epoch"], "train_loss": r.get("train_loss"),
                           "val_top1": (r["val_top1"] / 100.0) if r.get("val_top1") is not None else None}
                          for r in result.history]
        log(f"    -> top-1 {100 * rows[-1]['top1']:.1f}%"
            + (f", within-pair {100 * rows[-1]['within_pair_top1']:.1f}%"
               if rows[-1]["within_pair_top1"] is not None else "")
            + f" ({train_seconds:.0f}s training)")

    num_classes = len(classes)
    # The 50% ceiling is a property of the generated data (appearance independent of the class), not
    # of twin classes found in the names of real data.
    ceiling = 0.5 if pairs and pairs_source == "synthetic.json" else None
    figures = {"accuracy": plot_accuracy(rows, out_dir / "accuracy.png", chance=1 / num_classes,
                                         order_blind_ceiling=ceiling).name,
               "curves": plot_curves(histories, out_dir / "training_curves.png").name}
    figures.update(paper_figures)
    report = {
        "dataset": str(data_dir), "synthetic": data is None, "num_classes": num_classes,
        "class_pairs": [[classes[a], classes[b]] for a, b in pairs], "pairs_source": pairs_source,
        "num_val_videos": num_val_videos, "majority_share": majority_share,
        "settings": dataclasses.asdict(settings), "seed": seed, "quick": quick,
        "models": rows, "histories": histories, "figures": figures, "figure_video": figure_video,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    if rows:  # how to use the best model on any video (its checkpoint is kept under runs/)
        best = max(rows, key=lambda r: r["top1"])
        report["predict"] = {"model": best["model"], "command": (
            f"videoattn predict {files['root']} --config {best['config']} --checkpoint {best['checkpoint']} "
            f"--out {out_dir / 'predictions.csv'}")}
    atomic_write_json(out_dir / "report.json", report)
    atomic_write_text(out_dir / "report.md", render_markdown(report))
    log("")
    log(render_table(rows))
    log(f"\nreport: {out_dir / 'report.md'} (figures: {', '.join(figures.values())})")
    if "predict" in report:
        log(f"label videos with the best model ({report['predict']['model']}): {report['predict']['command']}")
    return report


def render_table(rows: Sequence[dict]) -> str:
    header = f"{'model':<6} {'block':<6} {'params':>9} {'top-1':>7} {'top-5':>7} {'in-pair':>8} {'train s':>8}"
    lines = [header, "-" * len(header)]
    for row in rows:
        pair = f"{100 * row['within_pair_top1']:7.1f}%" if row.get("within_pair_top1") is not None else "       -"
        lines.append(f"{row['model']:<6} {row['block']:<6} {row['params']:>9,} {100 * row['top1']:6.1f}% "
                     f"{100 * row['top5']:6.1f}% {pair} {row['train_seconds']:8.0f}")
    return "\n".join(lines)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _explain_numbers(report: dict) -> list[str]:
    """Markdown bullets saying what top-1, top-5 and within-pair mean on this dataset, what chance is,
    and which model did best by how much."""
    import math

    rows = report["models"]
    k = max(int(report["num_classes"]), 1)
    n = int(report.get("num_val_videos") or 0)
    videos = f"{n} validation videos" if n else "the validation videos"
    lines = [f"- **top-1** is the share of {videos} whose highest-scoring class is the labelled one. "
             f"Guessing among the {k} classes scores {_pct(1 / k)} (chance)"
             + (f"; always answering the most frequent class scores {_pct(report['majority_share'])}"
                if report.get("majority_share") else "") + ". "
             f"**top-5** counts a video as right when its class is among the five highest scores "
             f"(chance {_pct(min(5, k) / k)})."]
    noise = None
    if n:
        best = max(r["top1"] for r in rows) if rows else 0.5
        # Binomial standard error, kept off 0 near 0% and 100% (two videos from either end).
        p = min(max(best, 2 / n), 1 - 2 / n) if n > 4 else 0.5
        error = 100 * math.sqrt(p * (1 - p) / n)
        noise = 2 * error
        lines.append(f"- With {n} videos one video is {100 / n:.1f} points of top-1, and a top-1 near "
                     f"{_pct(best)} has a standard error of about {error:.1f} points: differences "
                     f"smaller than about {2 * error:.1f} points between models are within noise.")
    pairs = report.get("class_pairs") or []
    if pairs:
        source = ("recorded by the generator" if report.get("pairs_source") == "synthetic.json"
                  else "found in the class names (one antonym such as left/right, up/down, "
                  "opening/closing exchanged)")
        examples = "; ".join(f'"{a}" / "{b}"' for a, b in pairs[:3])
        lines.append(f"- **within-pair**: {len(pairs)} twin class pair(s) were {source}, e.g. {examples}. "
                     "Among validation videos of those classes predicted as either twin, it is the share "
                     "predicted as the right twin: 50% means the model finds the pair but cannot tell the "
                     "twins apart (as a model blind to frame order or direction must when the twins "
                     "differ only in it), 100% that it always can.")
    else:
        lines.append("- **within-pair** is not reported: no two class names differ by one antonym "
                     "(left/right, up/down, towards/away from, opening/closing, ...).")
    if len(rows) >= 2:
        ranked = sorted(rows, key=lambda r: r["top1"], reverse=True)
        first, second = ranked[0], ranked[1]
        gap = 100 * (first["top1"] - second["top1"])
        if gap > 0:
            last = (f"; the lowest is {ranked[-1]['model']} ({_pct(ranked[-1]['top1'])})"
                    if len(ranked) > 2 else "")
            verdict = " (within noise)" if noise is not None and gap < noise else ""
            lines.append(f"- Best top-1: **{first['model']}** ({_pct(first['top1'])}), {gap:.1f} points "
                         f"ahead of {second['model']} ({_pct(second['top1'])}){verdict}{last}.")
        else:
            lines.append(f"- Best top-1: {first['model']} and {second['model']} tie at {_pct(first['top1'])}.")
        paired = [r for r in rows if r.get("within_pair_top1") is not None]
        if len(paired) >= 2:
            ranked = sorted(paired, key=lambda r: r["within_pair_top1"], reverse=True)
            lines.append(f"- Best within-pair: **{ranked[0]['model']}** ({_pct(ranked[0]['within_pair_top1'])}), "
                         f"lowest {ranked[-1]['model']} ({_pct(ranked[-1]['within_pair_top1'])}).")
    elif rows:
        row = rows[0]
        lines.append(f"- Only {row['model']} was trained: {_pct(row['top1'])} top-1, "
                     f"{row['top1'] * k:.1f}x chance.")
    return lines


def _row_flag(row: dict, name: str):
    """A row's ``paper`` / ``order_aware`` (reports written before they were recorded: from the model)."""
    if name in row:
        return row[name]
    spec = DEMO_MODELS.get(row["model"])
    return getattr(spec, name) if spec else ("reference" if name == "paper" else True)


def _macs_text(macs: int | None) -> str:
    return "-" if macs is None else f"{macs / 1e6:.1f} M"


#: Within-pair points an order-aware model must gain over the best order-blind one for the run to
#: count as bearing out a claim about temporal order (the gap the demo's data is built to show).
ORDER_GAP = 0.20


def paper_verdicts(report: dict, row: dict) -> list[str]:
    """Sentences on whether this run bears out the claims of ``row``'s paper, from the run's numbers:
    frame order (within-pair accuracy against the order-blind models), cost against NL (MACs per clip
    at the demo size, and what the blocks add to the plain R2D trunk) and top-1 against NL."""
    rows = {r["model"]: r for r in report["models"]}
    paper = PAPERS.get(_row_flag(row, "paper"))
    name = row["model"]
    lines = []
    blind = [r for r in report["models"] if not _row_flag(r, "order_aware") and r["model"] != name
             and r.get("within_pair_top1") is not None]
    mine = row.get("within_pair_top1")
    if mine is None or not report.get("class_pairs"):
        lines.append("Frame order: not measurable on this data (no twin classes that differ only in direction).")
    elif not _row_flag(row, "order_aware"):
        lines.append(f"Frame order: {name} is order-blind by construction; within-pair {_pct(mine)} "
                     f"(50% is what ignoring order gives).")
    elif not blind:
        lines.append(f"Frame order: within-pair {_pct(mine)}; no order-blind model in this run to compare with "
                     f"(add r2d or nl with --models).")
    else:
        best = max(blind, key=lambda r: r["within_pair_top1"])
        gap = mine - best["within_pair_top1"]
        if gap >= ORDER_GAP:
            verdict = "borne out (it tells clips from their reverse)"
        elif gap > 0.05:
            verdict = (f"partly borne out: above order-blind, but by less than the {100 * ORDER_GAP:.0f} points "
                       f"this data allows")
        else:
            verdict = "not borne out in this run"
        lines.append(f"Frame order: within-pair {_pct(mine)} against {_pct(best['within_pair_top1'])} for the best "
                     f"order-blind model ({best['model']}), {100 * gap:+.1f} points: {verdict}.")
    macs, nl, trunk = row.get("macs"), rows.get("nl"), rows.get("r2d")
    if macs is not None and trunk is not None and trunk.get("macs") is not None and name != "r2d":
        added = macs - trunk["macs"]
        change = f"adds {_macs_text(added)}" if added >= 0 else f"saves {_macs_text(-added)}"
        cost = (f"Cost: {_macs_text(macs)} MACs per clip; it {change} ({100 * added / trunk['macs']:+.1f}%) "
                f"against the plain R2D trunk")
        if nl is not None and name != "nl" and nl.get("macs") is not None:
            nl_added = nl["macs"] - trunk["macs"]
            ratio = added / nl_added if nl_added else float("nan")
            cost += f", where NL's blocks add {_macs_text(nl_added)} ({ratio:.2f}x NL's)"
            if paper is not None and paper.cheaper_than_nl and _row_flag(row, "paper") != "reference":
                cost += ("; the paper's claim to cost less than NL is borne out" if added < nl_added
                         else "; the paper's claim to cost less than NL is not borne out at this size")
        lines.append(cost + f". Training took {row['train_seconds']:.0f} s"
                     + (f" (NL: {nl['train_seconds']:.0f} s)." if nl is not None and name != "nl" else "."))
    if nl is not None and name != "nl":
        diff = 100 * (row["top1"] - nl["top1"])
        lines.append(f"Top-1: {_pct(row['top1'])} against NL's {_pct(nl['top1'])} ({diff:+.1f} points).")
    return lines


def _paper_sections(report: dict) -> list[str]:
    """The report's "By paper" part: the references, then each paper with models in the run."""
    rows = report["models"]
    figures = report.get("figures", {})
    lines = ["## By paper", ""]
    references = [r for r in rows if _row_flag(r, "paper") == "reference"]
    if references:
        lines += ["**References.** " + "; ".join(
            f"{r['model']} ({DEMO_MODELS[r['model']].description if r['model'] in DEMO_MODELS else r['block']}, "
            f"{'order-aware' if _row_flag(r, 'order_aware') else 'order-blind'}): top-1 {_pct(r['top1'])}"
            + (f", within-pair {_pct(r['within_pair_top1'])}" if r.get("within_pair_top1") is not None else "")
            + f", {_macs_text(r.get('macs'))} MACs" for r in references) + ".", ""]
    for key, paper in PAPERS.items():
        members = [r for r in rows if _row_flag(r, "paper") == key]
        if not members:
            continue
        lines += [f"### {paper.title}", "", f"*Claim:* {paper.claim}", "",
                  "| model | params | MACs per clip | top-1 | within-pair | train time (s) |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in members:
            pair = _pct(r["within_pair_top1"]) if r.get("within_pair_top1") is not None else "-"
            lines.append(f"| {r['model']} | {r['params']:,} | {_macs_text(r.get('macs'))} | {_pct(r['top1'])} | "
                         f"{pair} | {r['train_seconds']:.0f} |")
        lines.append("")
        for r in members:
            lines += [f"- **{r['model']}**: " + " ".join(paper_verdicts(report, r))]
        lines.append("")
        for r in members:
            if r["model"] in figures:
                lines += [f"![{r['model']}]({figures[r['model']]})", "",
                          f"*{r['model']}, `videoattn visualize {paper.figure_kind}`"
                          + (f" on `{Path(report['figure_video']).name}`" if report.get("figure_video")
                             and paper.figure_kind != "gta-matrices" else "")
                          + f".* What to look at: {paper.look_at}", ""]
    return lines


def render_markdown(report: dict) -> str:
    rows = report["models"]
    lines = ["# videoattn demo: does the model see the order of frames?", ""]
    if report["synthetic"]:
        lines += [
            f"Dataset: the embedded synthetic temporal-reasoning set ({report['num_classes']} classes in "
            "time-reversed pairs; `" + report["dataset"] + "`). A video of one class played backwards is a "
            "valid video of its twin, and appearance is independent of the class, so a model that ignores "
            "frame order cannot tell the twins apart: its within-pair accuracy stays at 50% and its top-1 "
            "at most about 50%.", ""]
    else:
        lines += [f"Dataset: `{report['dataset']}` ({report['num_classes']} classes).", ""]
    lines += ["| model | paper | temporal block | params | MACs per clip | top-1 | top-5 | within-pair | "
              "train time (s) |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        pair = f"{100 * row['within_pair_top1']:.1f}%" if row.get("within_pair_top1") is not None else "-"
        paper = PAPERS.get(_row_flag(row, "paper"))
        lines.append(f"| {row['model']} | {paper.title.split(':')[0] if paper else '-'} | {row['block']} | "
                     f"{row['params']:,} | {_macs_text(row.get('macs'))} | {100 * row['top1']:.1f}% | "
                     f"{100 * row['top5']:.1f}% | {pair} | {row['train_seconds']:.0f} |")
    blind = [r for r in rows if not _row_flag(r, "order_aware")]
    aware = [r for r in rows if _row_flag(r, "order_aware")]
    lines += ["", "## What it means", "", *_explain_numbers(report)]
    if blind and aware and report.get("class_pairs"):
        paired_blind = [r for r in blind if r.get("within_pair_top1") is not None]
        paired_aware = [r for r in aware if r.get("within_pair_top1") is not None]
        if paired_blind and paired_aware:
            best_blind = max(paired_blind, key=lambda r: r["within_pair_top1"])
            worst_aware = min(paired_aware, key=lambda r: r["within_pair_top1"])
            gap = worst_aware["within_pair_top1"] - best_blind["within_pair_top1"]
            lines += ["", f"Order-blind models ({', '.join(r['model'] for r in blind)}: frame-level or "
                      f"permutation-invariant attention with average consensus) reach at most "
                      f"{_pct(best_blind['within_pair_top1'])} within pairs; order-aware ones "
                      f"({', '.join(r['model'] for r in aware)}) at least {_pct(worst_aware['within_pair_top1'])} "
                      f"({worst_aware['model']}): the weakest order-aware model is {100 * gap:+.1f} points from the "
                      f"best order-blind one."]
    lines += ["", *_paper_sections(report)]
    lines += ["## Figures", ""]
    titles = {"accuracy": "Accuracy per model", "curves": "Training curves"}
    for key in ("accuracy", "curves"):
        if key in report["figures"]:
            lines += [f"### {titles[key]}", "", f"![{key}]({report['figures'][key]})", ""]
    if report.get("predict"):
        lines += ["## Label your own videos with the best model", "",
                  f"The checkpoints are kept under `runs/<model>/`. To score any video, folder of videos or "
                  f"list file with {report['predict']['model']} (see docs/deploy.md):", "",
                  f"    {report['predict']['command']}", ""]
    lines.append(f"Total time: {report['total_seconds']:.0f} s. Settings: `{json.dumps(report['settings'])}`.")
    return "\n".join(lines) + "\n"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="train and compare temporal attention on the embedded dataset, with a report",
        description="Train small CPU-sized models that differ only in temporal modelling (references: none, NL, "
        "TSM; one per paper: GTA, RNL, SA-GSM, RSA, 3D BAT) on the embedded synthetic temporal-reasoning dataset "
        "(generated once into a cache) or on any Something-Something-v2-layout dataset, and write report.json, "
        "report.md (grouped by paper) and figures. The README gives the measured run time.")
    parser.add_argument("--quick", action="store_true",
                        help="a smaller run: half the videos, fewer epochs (the README gives its run time)")
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="a dataset in Something-Something-v2 layout (labels.json, train.json, "
                        "validation.json, videos/); default: the synthetic dataset")
    parser.add_argument("--models", default=None, metavar="A,B,...",
                        help=f"which models to compare (default: {','.join(DEFAULT_MODELS)}; also available: "
                        f"{','.join(k for k in DEMO_MODELS if k not in DEFAULT_MODELS)})")
    parser.add_argument("--out", default="demo-output", metavar="DIR", help="output folder (default ./demo-output)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of training (default 0)")
    tuning = parser.add_argument_group("sizes (override the default or --quick settings)")
    for name, kind in (("num-videos", int), ("epochs", int), ("size", int), ("frames", int),
                       ("base-channels", int), ("batch-size", int)):
        tuning.add_argument(f"--{name}", type=kind, default=None)
    tuning.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="train.precision of every model, for training and evaluation "
                        "(default fp32; fp16 needs CUDA)")
    parser.set_defaults(func=run_demo_command)


def run_demo_command(args) -> int:
    settings = DemoSettings.preset(args.quick)
    changes = {"num_videos": args.num_videos, "epochs": args.epochs, "size": args.size,
               "num_frames": args.frames, "base_channels": args.base_channels, "batch_size": args.batch_size,
               "precision": args.precision}
    settings = dataclasses.replace(settings, **{k: v for k, v in changes.items() if v is not None})
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None

    def log(message: str) -> None:
        print(message, flush=True)

    run_demo(quick=args.quick, data=args.data, models=models, out=args.out, seed=args.seed, settings=settings,
             log=log)
    sys.stdout.flush()
    return 0


__all__ = ["ANTONYMS", "DEFAULT_MODELS", "DEMO_MODELS", "DemoModel", "DemoSettings", "ensure_synthetic_dataset",
           "infer_class_pairs", "run_demo", "within_pair_accuracy"]
