"""Run records: metrics as JSON lines (always), TensorBoard scalars (when `tensorboard` is installed),
and human messages on stderr mirrored to `train.log`. Only rank 0 writes; other ranks get a silent logger.

metrics.jsonl is strict JSON (`vdit.fileio.dumps_json`): a non-finite value (a NaN loss, an fp16
gradient norm of Infinity) is written `null`, never as the bare `NaN` / `Infinity` other readers reject.
Without TensorBoard, one note says so when the first scalars are logged (a run that fails before
training prints only its error).

Loss names follow the official DETR-lineage engine (`train_one_epoch` of DETR / ReferFormer / SgMg /
VD-IT, see `loss_log_values`): `loss` is the weighted total, `<term>` the term times its weight and
`<term>_unscaled` the term as the criterion returns it.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from collections.abc import Mapping
from typing import Any, TextIO

METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
TENSORBOARD_DIR = "tensorboard"
MESSAGE_PREFIX = "[vdit train]"
TOTAL_LOSS = "loss"
UNSCALED_SUFFIX = "_unscaled"
"""The official engine logs `{k}_unscaled` for the criterion's raw term k and `k` for weight_dict[k] * k."""


def loss_log_values(losses: Mapping[str, float], weight_dict: Mapping[str, float]) -> dict[str, float]:
    """The loss values of one step as the official engine logs them.

    `losses` is the criterion's output as floats: unweighted terms under the official names plus
    `loss`, the weighted total. Returns `loss` unchanged, `k` = weight_dict[k] * losses[k] for every
    term with a weight (the official `loss_dict_reduced_scaled`) and `k_unscaled` = losses[k] for every
    term (`loss_dict_reduced_unscaled`). Scaling is linear, so averaging these values over micro-batches
    and ranks afterwards equals scaling the averages, as the official code does.
    """
    if TOTAL_LOSS not in losses:
        raise KeyError(f"the criterion's output lacks the total '{TOTAL_LOSS}' (keys: {sorted(losses)})")
    out = {TOTAL_LOSS: float(losses[TOTAL_LOSS])}
    terms = {k: float(v) for k, v in losses.items() if k != TOTAL_LOSS}
    out.update({k: v * float(weight_dict[k]) for k, v in terms.items() if k in weight_dict})
    out.update({k + UNSCALED_SUFFIX: v for k, v in terms.items()})
    return out


class RunLogger:
    """`record(event, **fields)` appends one JSON line; `scalars(step, values)` feeds TensorBoard;
    `info(msg)` prints a message. Disabled (no files, no output) when `enabled` is false."""

    def __init__(self, run_dir: str | Path, enabled: bool = True, use_tensorboard: bool = True,
                 stream: TextIO | None = None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self._jsonl = None
        self._log = None
        self._tb = None
        self._tb_missing = False  # tensorboard wanted but not installed: say so once, at the first scalars
        if not enabled:
            return
        run_dir = Path(run_dir)
        self._jsonl = open(run_dir / METRICS_FILE, "a", encoding="utf-8")
        self._log = open(run_dir / LOG_FILE, "a", encoding="utf-8")
        if use_tensorboard:
            self._tb = self._open_tensorboard(run_dir / TENSORBOARD_DIR)

    def _open_tensorboard(self, path: Path):
        try:
            import tensorboard  # noqa: F401  (the optional dependency group `tensorboard`)
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self._tb_missing = True
            return None
        return SummaryWriter(log_dir=str(path))

    @property
    def has_tensorboard(self) -> bool:
        return self._tb is not None

    def info(self, message: str) -> None:
        if not self.enabled:
            return
        line = f"{MESSAGE_PREFIX} {message}"
        print(line, file=self.stream, flush=True)
        if self._log is not None:
            self._log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            self._log.flush()

    def record(self, event: str, **fields: Any) -> None:
        if not self.enabled or self._jsonl is None:
            return
        from vdit.fileio import dumps_json

        row = {"event": event, "time": round(time.time(), 3)}
        row.update(fields)
        self._jsonl.write(dumps_json(row) + "\n")
        self._jsonl.flush()

    def scalars(self, step: int, values: dict[str, float], prefix: str = "train/") -> None:
        if self._tb_missing:
            self._tb_missing = False
            self.info("tensorboard is not installed (pip install 'vdit[tensorboard]'); "
                      f"metrics go to {METRICS_FILE} only")
        if self._tb is None:
            return
        for key, value in values.items():
            self._tb.add_scalar(prefix + key, value, step)

    def close(self) -> None:
        for handle in (self._jsonl, self._log):
            if handle is not None:
                handle.close()
        if self._tb is not None:
            self._tb.close()
        self._jsonl = self._log = self._tb = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a metrics.jsonl file (a run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
