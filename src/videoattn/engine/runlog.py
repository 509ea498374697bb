"""Run logging: JSONL metrics, TensorBoard events and a console progress bar (main process only).

``metrics.jsonl`` gets one JSON object per line (``{"kind": "step"|"epoch"|"val", "step": ..., ...}``),
appended and flushed as the run goes. On resume, lines written after the checkpoint's step (by the
killed run) are dropped first, atomically, so the file describes exactly one history. TensorBoard
events are purged past the resumed step the same way (``SummaryWriter(purge_step=...)``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..utils.io import atomic_write_text

__all__ = ["RunLogger"]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class RunLogger:
    def __init__(self, work_dir: str | Path, enabled: bool, resume_step: int | None = None,
                 tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(work_dir) / "metrics.jsonl"
        self._file = None
        self._writer = None
        if not enabled:
            return
        if resume_step is None:
            # A fresh run: drop logs a run without any checkpoint left behind.
            atomic_write_text(self.path, "")
            for stale in (Path(work_dir) / "tensorboard").glob("events.out.tfevents.*"):
                stale.unlink(missing_ok=True)
        else:
            self._truncate_after(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(Path(work_dir) / "tensorboard"),
                                             purge_step=resume_step if resume_step else None)
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                self._writer = None

    def _truncate_after(self, step: int) -> None:
        kept = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill
                if int(record.get("step", 0)) <= step:
                    kept.append(line)
        atomic_write_text(self.path, "".join(f"{line}\n" for line in kept))

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"kind": kind, "step": step, **{k: _json_safe(v) for k, v in values.items()}}
        assert self._file is not None
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in (
                        "epoch", "step"):
                    self._writer.add_scalar(f"{kind}/{key}", value, step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
