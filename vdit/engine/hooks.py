"""The concerns of the training loop, one hook each (detectron2's TrainerBase + HookBase).

`Trainer.fit` is a short loop: per epoch, micro-batches accumulate into an optimiser step
(`Trainer._step`), after which every hook's `after_step` runs, in order; `before_train`, `before_epoch`
and `after_epoch` frame it. A hook reads the trainer (its `state`, the step's `outcome`, `stop`,
`epoch_complete`) and acts on its one concern. The order of `default_hooks` matters: skipped steps are
counted before they are logged, and the stop decision comes before the checkpoint that depends on it.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from vdit.engine import distributed as du
from vdit.engine.optim import group_lrs
from vdit.engine.run_log import UNSCALED_SUFFIX
from vdit.errors import VditError
from vdit.losses import LOSS_TERMS

# TensorBoard gets the total and the last decoder layer's terms, weighted (official log names) and raw
# (`_unscaled`); metrics.jsonl gets every layer's (see vdit.engine.run_log.loss_log_values).
TB_MAIN_TERMS = ("loss", *LOSS_TERMS, *(k + UNSCALED_SUFFIX for k in LOSS_TERMS))


class NonFiniteLossError(VditError):
    """Too many consecutive optimiser steps had a NaN/Inf loss or gradient."""


@dataclass
class StepOutcome:
    """What one optimiser step did, for the hooks that run after it.

    values: the loss values to log, one dict per micro-batch (empty when the loss was non-finite).
    norm: the gradient norm before clipping (NaN when no optimiser step was tried; may be non-finite).
    skipped: why the optimiser step was skipped, or None when it was taken.
    """

    values: list[dict[str, float]]
    norm: float
    skipped: str | None


class HookBase:
    """One concern of the loop; `trainer` is set by `Trainer` when it registers the hook."""

    # the `vdit.engine.trainer.Trainer` that registered the hook (not imported: the trainer imports this
    # module, and the layering allows no loop, not even for type checking)
    trainer: Any

    def before_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass


class NonFiniteSkips(HookBase):
    """Count the skipped optimiser steps (a non-finite loss, or gradient norm without fp16 loss scaling),
    say so, and stop the run with NonFiniteLossError after `max_consecutive_nonfinite` in a row."""

    def after_step(self) -> None:
        tr = self.trainer
        st, reason = tr.state, tr.outcome.skipped
        if reason is None:
            st.consecutive_nonfinite = 0
            return
        st.consecutive_nonfinite += 1
        st.skipped_steps += 1
        limit = tr.tc.max_consecutive_nonfinite
        tr.log.info(f"step {st.global_step} (epoch {st.epoch + 1}): {reason}; optimizer step skipped "
                    f"({st.consecutive_nonfinite} in a row, the run stops at {limit})")
        tr.log.record("nonfinite", step=st.global_step, epoch=st.epoch + 1, reason=reason,
                      consecutive=st.consecutive_nonfinite)
        if st.consecutive_nonfinite >= limit:
            raise NonFiniteLossError(
                f"{st.consecutive_nonfinite} consecutive optimizer steps had a non-finite loss or gradient "
                f"(last: {reason}; epoch {st.epoch + 1}, step {st.global_step}); stopping. "
                "Lower train.lr, try train.amp=none, or check the data")


class LRSchedule(HookBase):
    """The per-epoch learning-rate schedule (`lr_drops`): one scheduler step per completed epoch."""

    def after_epoch(self) -> None:
        if not self.trainer.epoch_complete:
            return
        with warnings.catch_warnings():
            # fp16 loss scaling may have skipped every step of a short epoch: torch then warns about the
            # scheduler/optimizer order, which is not the case here.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            self.trainer.scheduler.step()


class StepLRDrops(HookBase):
    """x gamma after each optimizer step of `lr_drop_steps`. It runs after the step's metrics record (which
    shows the rate the step used) and before its checkpoint: the drop changes the optimiser's group rates
    in place, so that checkpoint's optimiser state carries the lowered rate and a resumed run continues
    at it; the epoch scheduler multiplies the current rate, so both kinds of drop compose."""

    def after_step(self) -> None:
        tr = self.trainer
        if tr.state.global_step in tr.tc.lr_drop_steps:
            for group in tr.optimizer.param_groups:
                group["lr"] *= tr.tc.gamma
            tr.log.info(f"step {tr.state.global_step}: learning rate x {tr.tc.gamma} -> {group_lrs(tr.optimizer)}")


class MetricsLog(HookBase):
    """The run records: the start, every `log_every` steps the mean loss values of the step (all ranks),
    learning rates and throughput, and each completed epoch."""

    def before_train(self) -> None:
        tr = self.trainer
        tc, st = tr.tc, tr.state
        steps_per_epoch = len(tr.sampler) // tc.grad_accum
        n_train = sum(p.numel() for p in tr.trainable)
        tr.log.info(f"{len(tr.dataset)} samples, {steps_per_epoch} steps/epoch x {tc.epochs} epochs; "
                    f"{tr.dist.world_size} process(es) x batch {tc.batch_size} x accum {tc.grad_accum}; "
                    f"lr {group_lrs(tr.optimizer)}; {n_train:,} trainable parameters; device {tr.device}")
        tr.log.record("start", epochs=tc.epochs, steps_per_epoch=steps_per_epoch, world_size=tr.dist.world_size,
                      resumed_from=str(tr.resume.path) if tr.resume else None, step=st.global_step)
        self.steps_done = 0

    def after_step(self) -> None:
        tr = self.trainer
        self.steps_done += 1
        if tr.outcome.values and tr.state.global_step % tr.tc.log_every == 0:
            self._log_step(tr.outcome.values, tr.outcome.norm)

    def after_epoch(self) -> None:
        tr = self.trainer
        st = tr.state
        if tr.epoch_complete:
            tr.log.record("epoch_end", epoch=st.epoch, step=st.global_step, lr=group_lrs(tr.optimizer),
                          skipped_steps=st.skipped_steps)

    def _log_step(self, window: list[dict[str, float]], norm: float) -> None:
        tr = self.trainer
        keys = sorted(window[0])
        local = torch.tensor([[w[k] for k in keys] for w in window], dtype=torch.float64).mean(0)
        total = du.all_reduce_sum(local.to(tr.device)).cpu() / tr.dist.world_size
        values = dict(zip(keys, total.tolist()))
        st = tr.state
        elapsed = time.time() - tr.t_start
        global_batch = tr.tc.batch_size * tr.dist.world_size * tr.tc.grad_accum
        lrs = group_lrs(tr.optimizer)
        extra = {"amp_scale": float(tr.scaler.get_scale())} if tr.scaler.is_enabled() else {}
        tr.log.record("train", step=st.global_step, epoch=st.epoch + 1, batch=st.batch_in_epoch,
                      **{f"lr/{k}": v for k, v in lrs.items()}, grad_norm=norm, skipped_steps=st.skipped_steps,
                      **extra,
                      samples_per_s=self.steps_done * global_batch / max(elapsed, 1e-9), **values)
        tr.log.scalars(st.global_step, {**{k: values[k] for k in TB_MAIN_TERMS if k in values},
                                        "grad_norm": norm, **{f"lr_{k}": v for k, v in lrs.items()}})


class ProgressBar(HookBase):
    """The step bar of an epoch (rank 0, on a terminal, unless `progress=False`)."""

    def before_epoch(self) -> None:
        from tqdm.auto import tqdm

        tr = self.trainer
        tc, st = tr.tc, tr.state
        shown = tr.dist.is_main and tr.progress
        self.bar = tqdm(total=len(tr.sampler) // tc.grad_accum, initial=st.batch_in_epoch // tc.grad_accum,
                        desc=f"epoch {st.epoch + 1}/{tc.epochs}", disable=True if not shown else None,
                        dynamic_ncols=True, leave=False)

    def after_step(self) -> None:
        values = self.trainer.outcome.values
        if values:
            self.bar.set_postfix(loss=f"{values[-1]['loss']:.4f}", refresh=False)
        self.bar.update(1)

    def after_epoch(self) -> None:
        self.bar.close()


class MaxSteps(HookBase):
    """Stop after `train.max_steps` optimiser steps (0: at the end of the schedule)."""

    def before_train(self) -> None:
        self._check()  # e.g. resumed without raising max_steps

    def after_step(self) -> None:
        self._check()

    def _check(self) -> None:
        tr = self.trainer
        tr.stop = bool(tr.tc.max_steps) and tr.state.global_step >= tr.tc.max_steps


class Checkpoints(HookBase):
    """A checkpoint every `ckpt_every` steps inside an epoch, and one at the end of every epoch and when
    the run stops (so neither is saved twice)."""

    def after_step(self) -> None:
        tr = self.trainer
        st, every = tr.state, tr.tc.ckpt_every
        end_of_epoch = st.batch_in_epoch == len(tr.sampler)
        if every and st.global_step % every == 0 and not end_of_epoch and not tr.stop:
            tr.checkpoint()

    def after_epoch(self) -> None:
        self.trainer.checkpoint()


class StepCallback(HookBase):
    """`Trainer.on_step_end(state)`, the extension point of tests and callers, after everything else."""

    def after_step(self) -> None:
        tr = self.trainer
        if tr.on_step_end is not None:
            tr.on_step_end(tr.state)


def default_hooks() -> list[HookBase]:
    """The hooks of a training run, in the order they run."""
    return [NonFiniteSkips(), LRSchedule(), MetricsLog(), StepLRDrops(), ProgressBar(), MaxSteps(), Checkpoints(),
            StepCallback()]
