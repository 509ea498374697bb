"""The training loop: SGD recipes, periodic validation, checkpoints, exact resume and DDP.

``train(config)`` runs one recipe end to end and returns a :class:`TrainResult`. What makes a resumed
run finish with the same weights as an uninterrupted one (bit-identical on CPU):

* the data order is a pure function of (seed, epoch) (:class:`ResumableSampler`), and the sampler
  restarts at the saved position; each sample's augmentation is a function of (seed, epoch, index)
  in the dataset;
* the learning rate is a pure function of the optimizer step (:class:`LRSchedule`);
* the global torch generator (dropout, stochastic layers) is re-seeded before every micro-step from
  (seed, optimizer step, micro-step, rank), so model randomness does not depend on what ran before;
  every RNG state is saved as well, for code outside the step;
* ``last.pt`` holds model, optimizer, scaler, position, partial-epoch meters and history, and is
  only ever replaced atomically, at optimizer-step boundaries.

Batch sizes: ``train.batch_size`` is the global batch of one optimizer step; each of the W processes
loads ``batch_size / (W * accumulation_steps)`` clips per micro-step. DDP averages gradients, so W
processes compute the same update as one process with the same global batch (exactly so when
BatchNorm statistics do not depend on the split of the batch: SyncBatchNorm on CUDA, or frozen BN).
The checkpointed sampler position is global (samples of the epoch's order consumed by all processes),
so a run resumes on any number of processes the global batch divides among.

Clusters (docs/cluster.md): ``train.resume: auto`` lets torchrun restarts and requeued jobs continue with
the same command; SIGTERM/SIGUSR1 set a flag that rides on each step's all-reduce, so every rank stops
at the same step boundary, where rank 0 writes ``last.pt`` and :class:`Preempted` is raised.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import Config, require
from ..data.device_transforms import resolve_transforms_on, transform_batch_on_device
from ..data.sampler import ResumableSampler
from ..errors import CheckpointError, ConfigError, VideoAttnError
from ..utils.faults import fault_point
from ..utils.io import atomic_write_json
from .builders import (
    apply_bn_mode,
    auto_precision_work,
    build_dataset_for,
    build_loader_for,
    build_model,
    check_model_name,
    explain_channels_last,
    frozen_bn_layers,
    resolve_channels_last,
    run_layout,
)
from .checkpoint import (
    load_model_weights,
    load_resume_checkpoint,
    restore_rng_state,
    save_checkpoint,
    unwrap_model,
)
from .distributed import DistContext, all_gather_objects, all_reduce_sum, barrier, init_distributed
from .evaluation import _flatten_skipped, _unique_skipped, predict_scores, score_loss
from .guard import (
    LoaderWorkerDiedError,
    NonFiniteGuard,
    StepBoundaryBatches,
    dead_worker_report,
    worker_death,
)
from .lock import work_dir_lock
from .metrics import summarize_scores
from .precision import Precision, apply_gradients, bf16_warning, explain_auto_precision, forward_backward
from .preemption import Preempted, PreemptionFlag, preemption_handlers
from .preflight import check_media_present
from .process import (
    check_work_dir,
    deterministic_cublas_workspace,
    nondeterministic_op_error,
    reseed,
    restored_process_settings,
    setup_determinism,
    step_seed,
)
from .progress import EpochMeters, ProgressBar
from .run_files import write_run_files
from .runlog import RunLogger
from .schedules import LRSchedule
from .train_state import RunPosition, best_state, check_world_size, last_state, read_position

__all__ = ["TrainResult", "TrainingDivergedError", "build_optimizer", "train"]

Callback = Callable[[str, dict[str, Any]], None]


def build_optimizer(parameters: Sequence[torch.nn.Parameter], t: Any) -> torch.optim.Optimizer:
    """SGD with ``t``'s (a train section's) lr, momentum, weight decay and Nesterov flag.

    The fused implementation (one kernel over all parameters) where torch has it for the parameters'
    device: on CPU it takes the optimizer step of R2D-50 from ~0.9-1.5 s to ~0.2 s on 2 cores
    (``benchmarks/train_step.py``), with the same update rule.
    """
    parameters = list(parameters)
    devices = {p.device.type for p in parameters}
    # Not with fp16's gradient scaler: fused SGD allocates its momentum buffers uninitialised
    # (empty_like) at the first step and leaves them so when the scaler skips that step for an
    # overflowed gradient; the next step then reads them as momentum (torch 2.13; tests/cuda/test_amp.py).
    fused = (len(devices) == 1 and next(iter(devices)) in ("cpu", "cuda")
             and getattr(t, "precision", "fp32") != "fp16")
    return torch.optim.SGD(parameters, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                           nesterov=t.nesterov, **({"fused": True} if fused else {}))


class TrainingDivergedError(VideoAttnError):
    """The loss became NaN or infinite; the run stopped before applying that step."""


@dataclass
class TrainResult:
    """What a finished run returns (also written to ``<work_dir>/summary.json``).

    ``history`` has one record per finished epoch: ``epoch`` (1-based), ``step``, ``lr``,
    ``train_loss``, ``train_top1``, ``seconds``, ``clips_per_second``, ``data_wait_fraction`` and,
    when validated, ``val_top1``, ``val_top5``, ``val_mean_class_accuracy``, ``val_loss`` and
    ``val_videos_evaluated`` (unreadable validation videos are left out, never substituted).
    """

    work_dir: Path
    history: list[dict[str, Any]]
    global_step: int
    epochs_done: int
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_top1: float | None
    best_epoch: int | None
    classes: list[str]
    summary: dict[str, Any] = field(default_factory=dict)


def train(config: Config, resume: bool | str | None = None, callbacks: Sequence[Callback] = (),
          ctx: DistContext | None = None) -> TrainResult:
    """Train ``config``'s model on its data; continue from ``<work_dir>/last.pt`` if ``resume``.

    ``resume`` (default: the config's ``train.resume``): ``False`` starts a fresh run and refuses a
    work dir that already holds one; ``True`` or ``"auto"`` continue from ``last.pt`` when there is
    one and start fresh otherwise, so the same command serves the first start and every restart
    (``torchrun --max-restarts``, a requeued job).

    SIGTERM or SIGUSR1 (when called from the main thread) stop the run at the next optimizer-step
    boundary, on every rank at the same step, with ``last.pt`` written there: :class:`Preempted` is
    raised (the CLI exits with :data:`~videoattn.engine.preemption.PREEMPTED_EXIT_CODE`).

    ``callbacks`` are called on the main process as ``callback(event, record)`` with event ``"step"``
    (every ``train.log_interval`` steps: epoch, step, loss, lr, clips_per_second, data_wait_fraction of
    those steps), ``"epoch"`` (the
    epoch's history record) and ``"end"`` (the run summary). Raises :class:`TrainingDivergedError`
    if the loss becomes NaN/inf (``last.pt`` stays the last good checkpoint) and ConfigError/DataError
    for bad settings or data, before training starts.
    """
    require(config, "model.name", "data.root", "data.train_annotations", "train.work_dir")
    check_model_name(config.model.name)
    t = config.train
    work_dir = Path(t.work_dir)
    mode = t.resume if resume is None else resume
    if mode not in (False, True, "auto"):
        raise ConfigError(f"train(resume=...): got {mode!r}; expected False, True or 'auto'")
    own_ctx = ctx is None
    if t.deterministic:
        deterministic_cublas_workspace()  # before init_distributed's first CUDA call
    ctx = ctx or init_distributed(t.device)
    try:
        with (restored_process_settings(), work_dir_lock(work_dir, enabled=ctx.is_main),
              preemption_handlers() as preempt):
            return _Trainer(config, ctx, work_dir, mode is not False, list(callbacks), preempt).run()
    except RuntimeError as error:
        explained = nondeterministic_op_error(error) if t.deterministic else None
        if explained is None:
            raise
        raise explained from None
    finally:
        if own_ctx:
            ctx.close()


class _Trainer:
    def __init__(self, config: Config, ctx: DistContext, work_dir: Path, resume: bool,
                 callbacks: list[Callback], preempt: PreemptionFlag | None = None):
        self.config, self.ctx, self.work_dir, self.callbacks = config, ctx, work_dir, callbacks
        self.preempt = preempt or PreemptionFlag()
        self.stop_requested = False  # the preemption flag as all ranks agreed on it at the last step
        t = config.train
        if config.model.sync_bn and ctx.enabled and ctx.device.type != "cuda":
            raise ConfigError("config key 'model.sync_bn': SyncBatchNorm needs CUDA devices; on CPU use "
                              "train.freeze_bn=all or partial, or per-process BatchNorm (sync_bn: false)")
        # fp16 without CUDA fails here, before any work. ``auto`` on a CPU decides from the work per clip.
        gmacs = auto_precision_work(config.model, t.precision, config.data.size, ctx.device)
        self.precision = Precision.resolve(t.precision, ctx.device, gmacs_per_clip=gmacs)
        # What each ``auto`` became and why, for the start message and metadata.json.
        self.auto_choices: dict[str, str] = {}
        if t.precision == "auto":
            self.auto_choices["train.precision"] = (f"{self.precision.name}: "
                                                    f"{explain_auto_precision(ctx.device, gmacs)[1]}")
        if config.model.channels_last == "auto":
            channels_last, reason = explain_channels_last("auto", ctx.device)
            self.auto_choices["model.channels_last"] = f"{str(channels_last).lower()}: {reason}"
        if ctx.is_main and (slow := bf16_warning(self.precision.name, ctx.device)):
            warnings.warn(slow, stacklevel=2)
        # Every process checks (the work dir must be on storage all processes share to resume).
        resume_path = check_work_dir(work_dir, resume)
        if ctx.enabled:
            sees = all_gather_objects(resume_path is not None, ctx)
            if len(set(sees)) > 1:
                raise CheckpointError(
                    f"{work_dir / 'last.pt'} is visible to rank(s) {[r for r, s in enumerate(sees) if s]} but "
                    f"not to rank(s) {[r for r, s in enumerate(sees) if not s]}: train.work_dir must be on "
                    "storage every node shares")
        self.resume_state = None
        if resume_path:  # a corrupt last.pt is reported and the previous good one (last.prev.pt) used
            resume_path, self.resume_state = load_resume_checkpoint(resume_path, warn=ctx.is_main)
        # The global batch fixes the run; the number of processes may change between resumes.
        self.micro_batch = check_world_size(t.batch_size, t.accumulation_steps, ctx.world_size,
                                            self.resume_state)
        setup_determinism(config)

        # Data first: a bad path or annotation fails before a model is built.
        self.train_set = build_dataset_for(config, "train")
        self.val_set = (build_dataset_for(config, "val") if config.data.val_annotations and t.val_interval
                        else None)
        tolerance, show = config.data.missing_tolerance, ctx.is_main
        check_media_present(self.train_set, config.data.root,
                            f"data.train_annotations ({config.data.train_annotations!r})", tolerance=tolerance,
                            warn=show)
        if self.val_set is not None:
            check_media_present(self.val_set, config.data.root,
                                f"data.val_annotations ({config.data.val_annotations!r})", tolerance=tolerance,
                                warn=show)
        self.transforms_on = resolve_transforms_on(config.data.transforms_on, ctx.device, self.train_set)
        if hasattr(self.train_set, "set_transforms_on"):
            self.train_set.set_transforms_on(self.transforms_on)
        if hasattr(self.train_set, "defer_decoding"):  # data.decoder: dali/nvjpeg decode in this process
            self.train_set.defer_decoding(ctx.device)
        # worker id (-1: main process) -> [clips, seconds producing them, peak resident KiB]
        self.loader_stats: dict[int, list[float]] = {}
        self.classes = [str(c) for c in (getattr(self.train_set, "classes", None) or [])]
        num_classes = config.model.num_classes or len(self.classes)
        if not num_classes:
            raise ConfigError("config key 'model.num_classes' is not set and the dataset has no classes")
        self.num_classes = num_classes
        self.sampler = ResumableSampler(len(self.train_set), shuffle=True, seed=t.seed,
                                        num_replicas=ctx.world_size, rank=ctx.rank, drop_last=True)
        self.steps_per_epoch = self.sampler.per_replica_length() // (self.micro_batch * t.accumulation_steps)
        if self.steps_per_epoch < 1:
            raise ConfigError(f"config key 'train.batch_size': got {t.batch_size} but the training set has "
                              f"only {len(self.train_set)} videos, fewer than one step")
        self.loader = build_loader_for(self.train_set, self.micro_batch, self.sampler, config.data.num_workers,
                                       config.data.pin_memory, seed=t.seed, drop_last=True)

        # Model, optimizer, schedule.
        model = build_model(config.model, num_classes, pretrained=self.resume_state is None, device=ctx.device)
        self.frozen_bn = frozen_bn_layers(model, t.freeze_bn)
        apply_bn_mode(model, self.frozen_bn)
        if config.model.sync_bn and ctx.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            self.frozen_bn = frozen_bn_layers(model, t.freeze_bn)
        model.to(ctx.device)
        self.model_core = model
        parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(parameters, t)
        self.scaler = self.precision.scaler()
        self.schedule = LRSchedule.from_config(t, self.steps_per_epoch)
        if ctx.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.model: nn.Module = DistributedDataParallel(
                model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None,
                find_unused_parameters=t.find_unused_parameters)
        else:
            self.model = model
        self.criterion = nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)

        # Position and records.
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict[str, Any]] = []
        self.best_top1: float | None = None
        self.best_epoch: int | None = None
        self.skipped: list[dict] = []
        self.meter_state: dict[str, float] | None = None
        self.totals = {"seconds": 0.0, "data_wait": 0.0, "clips": 0.0}
        if self.resume_state is not None:
            self._restore(self.resume_state)
        self.nonfinite = NonFiniteGuard(t.skip_nonfinite_steps, self.totals)
        self.logger = RunLogger(work_dir, ctx.is_main, resume_step=self.global_step if resume_path else None)
        if ctx.is_main:
            self._write_run_files(resumed_from=str(resume_path) if resume_path else None)
            if t.progress:
                where = (f"resuming at epoch {self.epoch + 1}, step {self.global_step}" if resume_path
                         else "starting")
                layout = run_layout(config.model, self.precision.name, ctx.device, t.precision)
                print(f"{config.model.name}: {len(self.train_set)} training videos, {num_classes} classes, "
                      f"{self.steps_per_epoch} steps/epoch x {t.epochs} epochs on {ctx.world_size} x "
                      f"{ctx.device.type} ({layout}); {where}; "
                      f"work dir {work_dir}", file=sys.stderr)
                if self.auto_choices:
                    print("auto settings: " + "; ".join(f"{key} -> {choice}" for key, choice
                                                         in self.auto_choices.items()), file=sys.stderr)

    # ---------------------------------------------------------------------------------------------
    def _restore(self, state: dict[str, Any]) -> None:
        load_model_weights(self.model_core, state, source="checkpoint last.pt")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (KeyError, ValueError) as error:
            raise CheckpointError(f"last.pt: the optimizer state does not fit this run ({error})") from None
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        position = read_position(state, self.config.train.batch_size)
        self.epoch, self.step_in_epoch, self.global_step = (position.epoch, position.step_in_epoch,
                                                            position.global_step)
        self.history = list(state.get("history", []))
        best = state.get("best") or {}
        self.best_top1 = best.get("top1")
        self.best_epoch = best.get("epoch")
        self.skipped = list(state.get("skipped", []))
        self.meter_state = state.get("meters") if self.ctx.is_main else None
        self.totals = dict(state.get("totals", self.totals))
        restore_rng_state(state["rng"])

    def _write_run_files(self, resumed_from: str | None) -> None:
        write_run_files(self.work_dir, self.config, self.ctx, {
            "decoder_backend": getattr(self.train_set, "decoder_backend", None),
            "train_data": self.train_set.metadata() if hasattr(self.train_set, "metadata") else None,
            "train_videos": len(self.train_set), "val_videos": len(self.val_set) if self.val_set else 0,
            "num_classes": self.num_classes, "steps_per_epoch": self.steps_per_epoch,
            "micro_batch_per_process": self.micro_batch, "precision": self.precision.name,
            "channels_last": resolve_channels_last(self.config.model.channels_last, self.ctx.device),
            "auto_choices": self.auto_choices}, resumed_from)

    def _checkpoint_state(self, meters: EpochMeters, step_in_epoch: int) -> dict[str, Any]:
        return last_state(
            model_state=unwrap_model(self.model).state_dict(), optimizer=self.optimizer, scaler=self.scaler,
            schedule=self.schedule, config=self.config,
            position=RunPosition(self.epoch, step_in_epoch, self.global_step), micro_batch=self.micro_batch,
            sampler_seed=self.sampler.seed, world_size=self.ctx.world_size, meters=meters.values,
            totals=self.totals, history=self.history, best_top1=self.best_top1, best_epoch=self.best_epoch,
            skipped=self.skipped, num_classes=self.num_classes, classes=self.classes)

    def _save_last(self, meters: EpochMeters, step_in_epoch: int) -> None:
        """All processes join (meters and skip lists are gathered); the main process writes."""
        global_meters = EpochMeters(meters.reduced(self.ctx)) if self.ctx.enabled else meters
        gathered = all_gather_objects(self.skipped, self.ctx)
        if self.ctx.is_main:
            self.skipped = [item for part in gathered for item in part]
            save_checkpoint(self._checkpoint_state(global_meters, step_in_epoch), self.work_dir / "last.pt",
                            keep_previous=True)
        else:
            self.skipped = []
        barrier(self.ctx)

    def _emit(self, event: str, record: dict[str, Any]) -> None:
        if self.ctx.is_main:
            for callback in self.callbacks:
                callback(event, record)

    # ---------------------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        t = self.config.train
        stop = False
        while self.epoch < t.epochs and not stop:
            stop = self._run_epoch()
        summary = self._finish()
        return TrainResult(
            work_dir=self.work_dir, history=self.history, global_step=self.global_step,
            epochs_done=len(self.history), last_checkpoint=self.work_dir / "last.pt",
            best_checkpoint=(self.work_dir / "best.pt") if (self.work_dir / "best.pt").exists() else None,
            best_top1=self.best_top1, best_epoch=self.best_epoch, classes=self.classes, summary=summary)

    def _run_epoch(self) -> bool:
        """Train the rest of the current epoch; return True if max_steps stopped the run."""
        t, ctx = self.config.train, self.ctx
        meters = EpochMeters(self.meter_state)
        self.meter_state = None
        self.sampler.set_epoch(self.epoch)
        self.sampler.set_global_start(self.step_in_epoch * t.batch_size)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(self.epoch)
        self.model.train()
        apply_bn_mode(self.model_core, self.frozen_bn)
        progress = ProgressBar(ctx.is_main and t.progress, self.steps_per_epoch, self.step_in_epoch,
                             self.epoch + 1, t.epochs)
        batches = StepBoundaryBatches(iter(self.loader), self.config.data.num_workers > 0)
        window = {"loss": 0.0, "clips": 0.0, "steps": 0.0, "data_wait": 0.0, "start": time.perf_counter()}
        epoch_start = time.perf_counter()
        stopped = False
        try:
            while self.step_in_epoch < self.steps_per_epoch:
                if t.max_steps is not None and self.global_step >= t.max_steps:
                    stopped = True
                    break
                step_start = time.perf_counter()
                try:
                    loss_value, clips, wait = self._train_step(batches, meters)
                except LoaderWorkerDiedError:
                    self.optimizer.zero_grad(set_to_none=True)  # drop a partly accumulated step
                    self._save_last(meters, self.step_in_epoch)  # resumable at this step boundary
                    raise
                fault_point("step")
                elapsed = time.perf_counter() - step_start
                meters.add(seconds=elapsed, data_wait=wait, compute=elapsed - wait)
                self.totals["seconds"] += elapsed
                self.totals["data_wait"] += wait
                self.totals["clips"] += clips * ctx.world_size
                self.global_step += 1
                self.step_in_epoch += 1
                window["loss"] += loss_value if math.isfinite(loss_value) else 0.0
                window["clips"] += clips * ctx.world_size
                window["data_wait"] += wait
                window["steps"] += 1
                if self.global_step % t.log_interval == 0 or self.step_in_epoch == self.steps_per_epoch:
                    self._log_window(window)
                progress.update(loss=f"{loss_value:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                                clips_s=f"{clips * ctx.world_size / max(elapsed, 1e-9):.1f}")
                saved = False
                if (t.checkpoint_interval and self.global_step % t.checkpoint_interval == 0
                        and self.step_in_epoch < self.steps_per_epoch):
                    self._save_last(meters, self.step_in_epoch)
                    saved = True
                if self.stop_requested:  # every rank saw the same all-reduced flag at this step
                    if not saved:
                        self._save_last(meters, self.step_in_epoch)
                    self._preempted()
        finally:
            progress.close()
            batches.close()
            del batches
        if stopped and self.step_in_epoch < self.steps_per_epoch:
            self._save_last(meters, self.step_in_epoch)
            return True
        self._end_epoch(meters, time.perf_counter() - epoch_start)
        return t.max_steps is not None and self.global_step >= t.max_steps

    def _train_step(self, batches: Any, meters: EpochMeters) -> tuple[float, int, float]:
        """One optimizer step over ``accumulation_steps`` micro-batches; returns (mean loss, clips, wait)."""
        t, ctx = self.config.train, self.ctx
        accumulation = t.accumulation_steps
        lr = self.schedule.lr_at(self.global_step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        wait = 0.0
        loss_sum = 0.0
        correct = 0
        clips = 0
        for micro in range(accumulation):
            fetch_start = time.perf_counter()
            try:
                batch = next(batches)
            except RuntimeError as error:
                if not worker_death(error):
                    raise
                start = (self.step_in_epoch * accumulation + micro) * self.micro_batch
                raise LoaderWorkerDiedError(
                    f"{str(error).splitlines()[0].strip()} during epoch {self.epoch + 1}, optimizer step "
                    f"{self.global_step + 1}; " + dead_worker_report(error, batches.iterator, self.train_set,
                                                                      self.sampler, start, self.micro_batch)
                    + ". last.pt now holds this step's start; lower data.num_workers or the memory per "
                    "worker, then --resume") from None
            if "payload" in batch:  # data.decoder: dali/nvjpeg: decoding (and any substitute) is part of the wait
                batch = self.train_set.decode_batch(batch, ctx.device)
            wait += time.perf_counter() - fetch_start
            self.skipped.extend(_flatten_skipped(batch.get("skipped")))
            if "load" in batch:
                worker, seconds, count, peak_kib = batch["load"]
                stats = self.loader_stats.setdefault(int(worker), [0.0, 0.0, 0.0])
                stats[0] += count
                stats[1] += seconds
                stats[2] = max(stats[2], peak_kib)
            reseed(step_seed(t.seed, self.global_step, micro, ctx.rank), ctx.device)
            video = (batch["video"] if "video" in batch else batch["image"]).to(ctx.device, non_blocking=True)
            if "crop_box" in batch:  # data.transforms_on: device
                video = transform_batch_on_device(video, batch["crop_box"], batch["flip"], self.train_set.transform)
            labels = torch.as_tensor(batch["label"]).long().to(ctx.device, non_blocking=True)
            sync = (contextlib.nullcontext() if micro == accumulation - 1 or not ctx.enabled
                    else self.model.no_sync())
            with sync:
                loss, logits = forward_backward(self.model, video, labels, self.criterion, self.precision,
                                                self.scaler, accumulation)
            loss_sum += float(loss.detach()) * labels.shape[0]
            correct += int((logits.detach().argmax(dim=1) == labels).sum())
            clips += labels.shape[0]
        local_loss = loss_sum / max(clips, 1)
        finite = math.isfinite(local_loss)
        self.stop_requested = self.preempt.requested
        if ctx.enabled:  # one all-reduce: did any rank see a bad loss / a preemption signal?
            flags = all_reduce_sum([0.0 if finite else 1.0, 1.0 if self.stop_requested else 0.0], ctx)
            finite = float(flags[0]) == 0.0
            self.stop_requested = float(flags[1]) > 0.0
        if not finite:
            self.optimizer.zero_grad(set_to_none=True)
            if self.nonfinite.may_skip():  # no update: the scaler, momentum and weights stay as they were
                record = self.nonfinite.report(local_loss, self.epoch + 1, self.global_step, ctx.is_main)
                self.logger.log("nonfinite", self.global_step, record)
                return math.nan, clips, wait
            last = self.work_dir / "last.pt"
            saved = (f"the last good checkpoint is {last}" if last.exists()
                     else "no checkpoint was written yet")
            raise TrainingDivergedError(
                f"loss became {local_loss} at epoch {self.epoch + 1}, optimizer step {self.global_step} "
                f"(lr {lr:.3g}); stopped before applying it, {saved}"
                + (f" ({self.nonfinite.skipped} earlier bad step(s) skipped, the most "
                   f"train.skip_nonfinite_steps={self.nonfinite.limit} allows)" if self.nonfinite.limit else "")
                + ". Lower train.lr, add "
                "train.clip_grad_norm or check the data, then --resume")
        apply_gradients(self.optimizer, self.model.parameters(), self.scaler, t.clip_grad_norm)
        meters.add(loss_sum=loss_sum, correct1=correct, clips=clips)
        return local_loss, clips, wait

    def _preempted(self) -> None:
        """After the checkpoint of a signalled stop: close the logs and raise :class:`Preempted`."""
        self.logger.flush()
        if self.ctx.is_main:
            self.logger.close()
        raise Preempted(
            f"stopped by {self.preempt.name() if self.preempt.requested else 'a signal on another rank'} at "
            f"epoch {self.epoch + 1}, optimizer step {self.global_step} "
            f"({self.step_in_epoch}/{self.steps_per_epoch} of the epoch); {self.work_dir / 'last.pt'} holds "
            "this step: run the same command with --resume auto to continue")

    def _log_window(self, window: dict[str, float]) -> None:
        now = time.perf_counter()
        record = {"epoch": self.epoch + 1, "loss": window["loss"] / max(window["steps"], 1.0),
                  "lr": self.optimizer.param_groups[0]["lr"],
                  "clips_per_second": window["clips"] / max(now - window["start"], 1e-9),
                  "data_wait_fraction": min(window["data_wait"] / max(now - window["start"], 1e-9), 1.0)}
        self.logger.log("step", self.global_step, record)
        self._emit("step", {"step": self.global_step, **record})
        window.update(loss=0.0, clips=0.0, steps=0.0, data_wait=0.0, start=now)

    def _validate(self) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Scores of the validation split (a dead loader worker makes ``predict_scores`` score again
        in-process, so the epoch's training is never lost to it)."""
        return predict_scores(
            self.model_core, self.val_set, self.ctx, views="1x1", clips_per_batch=self.config.eval.batch_size,
            num_workers=self.config.data.num_workers, precision=self.precision.name, average=self.config.eval.average,
            pin_memory=self.config.data.pin_memory)[1:]

    def _end_epoch(self, meters: EpochMeters, wall: float) -> None:
        t, ctx = self.config.train, self.ctx
        totals = meters.reduced(ctx)
        clips = max(totals["clips"], 1.0)
        record: dict[str, Any] = {
            "epoch": self.epoch + 1, "step": self.global_step, "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": totals["loss_sum"] / clips, "train_top1": 100.0 * totals["correct1"] / clips,
            "seconds": totals["seconds"],
            "clips_per_second": totals["clips"] / max(totals["seconds"], 1e-9),
            "data_wait_fraction": totals["data_wait"] / max(totals["seconds"], 1e-9),
        }
        is_best = False
        if self.val_set is not None and t.val_interval and (
                (self.epoch + 1) % t.val_interval == 0 or self.epoch + 1 == t.epochs):
            val_start = time.perf_counter()
            scores, labels, skipped = self._validate()
            fault_point("evaluation")
            if ctx.is_main:
                self.skipped.extend(skipped)
            summary = summarize_scores(scores, labels)
            record.update(val_top1=summary["top1"], val_top5=summary["top5"],
                          val_mean_class_accuracy=summary["mean_class_accuracy"],
                          val_loss=score_loss(scores, labels, self.config.eval.average),
                          val_videos_evaluated=int(scores.shape[0]),
                          val_seconds=time.perf_counter() - val_start)
            if self.best_top1 is None or summary["top1"] > self.best_top1:
                self.best_top1, self.best_epoch, is_best = summary["top1"], self.epoch + 1, True
        self.history.append(record)
        self.logger.log("epoch", self.global_step, record)
        self.logger.flush()
        self.epoch += 1
        self.step_in_epoch = 0
        self._save_last(EpochMeters(), 0)
        if is_best and ctx.is_main:
            save_checkpoint(best_state(model_state=unwrap_model(self.model).state_dict(), config=self.config,
                                       num_classes=self.num_classes, classes=self.classes, epoch=self.epoch,
                                       global_step=self.global_step, record=record),
                            self.work_dir / "best.pt")
        self._emit("epoch", dict(record))

    def _loader_report(self, per_rank: list[dict[int, list[float]]]) -> dict[str, Any]:
        """This session's loader throughput against the model's, and a hint when the data wait passes 10%.

        A worker's rate is the clips it produced over the seconds it spent producing them (decode +
        CPU transforms, substitutions included); the loader's rate is the sum over workers (of all
        processes). The model's rate is the clips trained over the step time not spent waiting for data.
        Peak host memory is each producing process's peak resident set (a worker's includes pages it
        shares with the main process; "main", with ``num_workers: 0``, is the whole training process).
        """
        totals, config = self.totals, self.config
        per_worker, peak_mib = {}, {}
        for rank, stats in enumerate(per_rank):
            for worker, (clips, seconds, peak_kib) in sorted(stats.items()):
                name = f"{'main' if worker < 0 else f'worker{worker}'}" + (f"@rank{rank}" if len(per_rank) > 1 else "")
                per_worker[name] = clips / max(seconds, 1e-9)
                peak_mib[name] = peak_kib / 1024
        loader_rate = sum(per_worker.values())
        compute = max(totals["seconds"] - totals["data_wait"], 1e-9)
        model_rate = totals["clips"] / compute
        wait_fraction = totals["data_wait"] / max(totals["seconds"], 1e-9)
        hint = None
        if wait_fraction > 0.10 and per_worker:
            decoder = str(getattr(self.train_set, "decoder_backend", config.data.decoder))
            other = {"pyav": "torchcodec", "torchcodec": "pyav"}.get(decoder)
            gpu_decoder = ({"pyav": "nvdec or dali", "torchcodec": "nvdec or dali", "frames": "nvjpeg or dali"}
                           .get(decoder) if self.ctx.device.type == "cuda" else None)
            first = (f"data.decoder={gpu_decoder} (GPU decoding)" if gpu_decoder else
                     f"data.decoder={other}" if other else
                     "more DALI threads (data.options.decode_threads; it decodes in the training process)"
                     if decoder == "dali" else
                     "data.decoder=frames (nvjpeg decodes in the training process; off a GPU that is one CPU "
                     "thread)" if decoder == "nvjpeg" else "data.options.cache_decoded=true")
            tries = [first,
                     f"more workers (data.num_workers={config.data.num_workers} now)",
                     f"fewer frames (model.num_frames={config.model.num_frames} now)"]
            if self.transforms_on == "cpu" and self.ctx.device.type == "cuda":
                tries.insert(1, "data.transforms_on=device")
            hint = (f"data wait is {100 * wait_fraction:.0f}% of training: the loader delivers {loader_rate:.1f} "
                    f"clips/s, the model consumes {model_rate:.1f}; try " + " / ".join(tries))
        return {"transforms_on": self.transforms_on, "clips_per_second": loader_rate,
                "clips_per_second_per_worker": per_worker, "peak_host_memory_mib_per_worker": peak_mib,
                "model_clips_per_second": model_rate,
                "data_wait_fraction": wait_fraction, "hint": hint}

    def _finish(self) -> dict[str, Any]:
        ctx = self.ctx
        gathered = all_gather_objects(self.skipped, ctx)
        skipped = _unique_skipped([item for part in gathered for item in part])
        seconds = self.totals["seconds"]
        summary = {
            "work_dir": str(self.work_dir), "epochs_done": len(self.history),
            "global_step": self.global_step, "train_seconds": seconds,
            "clips_per_second": self.totals["clips"] / max(seconds, 1e-9),
            "data_wait_fraction": self.totals["data_wait"] / max(seconds, 1e-9),
            "best_val_top1": self.best_top1, "best_epoch": self.best_epoch,
            "final": self.history[-1] if self.history else None,
            "skipped_samples": skipped, "num_skipped": sum(item["count"] for item in skipped),
            "nonfinite_steps_skipped": self.nonfinite.skipped,
            "world_size": ctx.world_size,
        }
        summary["loader"] = self._loader_report(all_gather_objects(self.loader_stats, ctx))
        if ctx.is_main:
            if summary["loader"]["hint"] and self.config.train.progress:
                print(summary["loader"]["hint"], file=sys.stderr)
            atomic_write_json(self.work_dir / "summary.json", summary)
            self.logger.close()
        self._emit("end", dict(summary))
        barrier(ctx)
        return summary
