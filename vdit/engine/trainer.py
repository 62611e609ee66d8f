"""The training loop (spec 5.1-5.3): AdamW + MultiStepLR per epoch, gradient clipping, DDP, AMP,
gradient accumulation, atomic checkpoints and exact resumption.

    trainer = Trainer(run_config, run_dir, resume=open_checkpoint(path) or None)
    result = trainer.fit()

Reproducibility contract: with the same config and seed, a run interrupted and resumed from any of its
checkpoints ends with exactly the parameters of an uninterrupted run. This holds because
- the data order is a pure function of (seed, epoch) (`EpochBatchSampler`), and each sample's
  randomness a pure function of (seed, epoch, index) (the datasets' `sample_rng`);
- the DataLoader draws its worker seeds from its own generator seeded (seed, epoch), never from the
  global RNG;
- a checkpoint holds the optimiser, scheduler and grad-scaler states and every rank's torch / CUDA /
  python / numpy RNG states (dropout, VAE posterior sampling, Gaussian noise draw from them).

A non-finite loss (or, without fp16 loss scaling, a non-finite gradient norm) skips the optimiser step
with a message and a `nonfinite` metrics record; `max_consecutive_nonfinite` skips in a row stop the
run with `vdit.engine.hooks.NonFiniteLossError`. Losses are never silently zeroed (the official engine
does that).

A step is `vdit.training.TrainingWrapper` (forward, matching, refinement of the matched query, loss);
`fit` is a short loop around it, and each concern around a step (skipped steps, the LR schedule,
records, the progress bar, stopping, checkpoints) is a hook of `vdit.engine.hooks`.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vdit.config import RunConfig, save_yaml
from vdit.data.types import ClipBatch
from vdit.engine import distributed as du
from vdit.engine.checkpoint import (
    CHECKPOINTS_DIR, FINAL_DIR, LATEST, LOCK_FILE, Checkpoint, RunLock, TrainState, load_init_weights,
    load_model_weights, load_optimizer, load_rng, save_checkpoint,
)
from vdit.engine.datasets import build_train_dataset, ensure_synthetic, set_epoch
from vdit.engine.hooks import HookBase, StepOutcome, default_hooks
from vdit.engine.run_log import RunLogger, loss_log_values
from vdit.engine.optim import (
    TEXT_ENCODER_PREFIX, build_optimizer, build_scheduler, lr_scale, set_text_encoder_trainable,
)
from vdit.engine.sampler import EpochBatchSampler
from vdit.errors import ConfigError, VditError
from vdit.losses import build_criterion, build_matcher
from vdit.models.text_cache import TextFeatureCache
from vdit.training import TrainingWrapper

RUN_CONFIG_FILE = "config.yaml"
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
SIZE_DIVISIBILITY = 32  # training batches are padded to a multiple of 32 (spec 5.3)
NUMPY_SEED_MODULUS = 2**32


# The head's modules `train.compile=head` compiles in place (with the matcher and the loss): the trainable
# DETR-style part after the backbone levels (spec 3), many small kernels per step.
HEAD_MODULES = ("text_proj", "queries", "input_proj", "transformer", "class_embed", "bbox_embed", "mask_head",
                "mask_optimiser")


@dataclass
class TrainResult:
    run_dir: Path
    state: TrainState
    final_dir: Path | None  # save_pretrained folder of the finished model (None when stopped early)
    last_checkpoint: Path | None


def seed_everything(seed: int) -> None:
    """torch (CPU and every CUDA device), python `random` and numpy global generators."""
    random.seed(seed)
    np.random.seed(seed % NUMPY_SEED_MODULUS)
    torch.manual_seed(seed)


def frozen_weights_dtype(amp: str) -> torch.dtype | None:
    """The dtype of the frozen foundation weights for `train.amp` (None: as stored, fp32). bf16 autocast
    gets bf16 frozen weights: at full size 13.3 instead of 22.9 GB per step, and the frozen modules then
    run natively (`DiffusionBackbone._native`). fp16 autocast keeps fp32 frozen weights (an fp16 UNet,
    which gradients flow through, risks overflow). bench/fullscale.py builds its rows the same way."""
    return torch.bfloat16 if amp == "bf16" else None


def compile_head(wrapper: TrainingWrapper, **compile_kwargs: Any) -> int:
    """`torch.compile` in place (`nn.Module.compile`: names and state dicts unchanged) the head's modules
    (HEAD_MODULES, each entry of a ModuleList on its own), the matcher and the criterion of a training
    step; returns how many modules. The backbone is left as is (`DiffusionBackbone.compile_unet` is its
    own lever)."""
    modules: list[nn.Module] = []
    for name in HEAD_MODULES:
        module = getattr(wrapper.model, name)
        modules.extend(module if isinstance(module, nn.ModuleList) else [module])
    modules += [wrapper.matcher, wrapper.criterion]
    for module in modules:
        module.compile(**compile_kwargs)
    return len(modules)


def check_targets_on_host(batch: Any) -> None:
    """The value checks the matcher and the criterion skip in training (`check_values=False`), done on
    the host copy of the batch, where they cost no device sync: every clip has a valid frame among the
    frames the head runs on (all, or `valid_indices`), and the target boxes are valid (xyxy-ordered once
    converted). Raises InputError as the matcher / criterion would."""
    from vdit.losses.targets import align_targets, require_valid_frame_per_clip
    from vdit.models.ops.box_ops import box_cxcywh_to_xyxy, paired_generalized_box_iou

    indices = getattr(batch, "valid_indices", None)
    frames = len(indices[0]) if indices else batch.valid.shape[1]
    targets = align_targets(batch, frames)
    require_valid_frame_per_clip(targets.valid)
    xyxy = box_cxcywh_to_xyxy(targets.boxes)
    paired_generalized_box_iou(xyxy, xyxy)


def prepare_run_dir(run_dir: Path, resuming: bool) -> tuple[Path | None, bool, RunLock]:
    """Create the run folder, lock it against a second process (`RunLock`), and check that it is writable
    and not an earlier run's (without --resume). Returns (the topmost folder created here or None, whether
    the folder was empty before, the held lock): what a run that fails to start must remove again."""
    from vdit.fileio import first_missing

    created = first_missing(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {run_dir} is not writable ({exc.strerror or exc})") from None
    lock = RunLock(run_dir).acquire()
    if not resuming and (run_dir / CHECKPOINTS_DIR / LATEST).is_file():
        lock.release()
        raise ConfigError(f"{run_dir} already holds a run with checkpoints; pass --resume to continue it "
                          "or choose another --out")
    was_empty = not any(p.name != LOCK_FILE for p in run_dir.iterdir())
    return created, was_empty, lock


def _abandon_run_dir(run_dir: Path, claim: tuple[Path | None, bool, RunLock] | None) -> None:
    """A run that failed before training: remove what it wrote (config.yaml, logs) when the folder was
    new or empty, so a typo leaves nothing behind; then drop the lock."""
    if claim is None:  # not rank 0
        return
    created, was_empty, lock = claim
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
    elif was_empty:
        for entry in run_dir.iterdir():
            if entry.name == LOCK_FILE:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    lock.release()


def _on_main(dist_info: du.DistInfo, fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0; an error there is raised on every rank (instead of leaving the others waiting)."""
    failure: VditError | None = None
    result = None
    if dist_info.is_main:
        try:
            result = fn()
        except VditError as exc:
            failure = exc
    message = du.broadcast_object(str(failure) if failure is not None else None, dist_info.device)
    if failure is not None:
        raise failure
    if message is not None:
        raise ConfigError(f"rank 0: {message}")
    du.barrier()
    return result


class Trainer:
    """One training run on this process (see the module docstring)."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, resume: Checkpoint | None = None,
                 dist_info: du.DistInfo | None = None, progress: bool = True):
        """`progress=False` hides the step bar (`--quiet`); it is shown only on a terminal anyway."""
        cfg.validate()
        self.progress = progress
        self.cfg = cfg
        self.tc = cfg.train
        self.run_dir = Path(run_dir)
        self.resume = resume
        self.dist = dist_info if dist_info is not None else du.init_distributed(self.tc.device)
        self.device = self.dist.device
        self.on_step_end: Callable[[TrainState], None] | None = None  # extension point (tests, callers)
        if self.tc.init_required and not self.tc.init_from and resume is None:
            raise ConfigError("this recipe starts from pre-trained weights: pass --init-from DIR "
                              "(e.g. the final/ folder of a pretrain_refcoco run) or set train.init_from")

        # Data first: a wrong root or a malformed dataset file fails fast, before the run folder exists
        # and before the foundation models are loaded.
        wrote = cfg.data.name == "synthetic" and _on_main(self.dist, lambda: ensure_synthetic(cfg.data))
        self.dataset = build_train_dataset(cfg.data, self.tc.num_frames, self.tc.seed)
        self.sampler = EpochBatchSampler(len(self.dataset), self.tc.batch_size, self.dist.world_size,
                                         self.dist.rank, self.tc.seed, self.tc.grad_accum)

        self._claim = _on_main(self.dist, lambda: prepare_run_dir(self.run_dir, resume is not None))
        self.log = RunLogger(self.run_dir, enabled=self.dist.is_main)
        try:
            _on_main(self.dist, lambda: save_yaml(cfg, self.run_dir / RUN_CONFIG_FILE))
            if wrote:
                self.log.info(f"wrote a synthetic benchmark ({cfg.data.synthetic_videos} videos) to {cfg.data.root}")
            seed_everything(self.tc.seed)
            self.model = self._build_model()
            # The value checks of the matcher and the loss are done on the host (`check_targets_on_host`).
            self.criterion = build_criterion(cfg.model.loss, cfg.model.head.dec_layers, check_values=False)
            self.wrapper = TrainingWrapper(self.model, build_matcher(cfg.model.loss, check_values=False),
                                           self.criterion)
            self._set_up_speed_levers()
            self.scale = lr_scale(self.tc, self.dist.world_size)
            self.optimizer = build_optimizer(self.model, self.tc, self.scale, self.device)
            self.scheduler = build_scheduler(self.optimizer, self.tc)
            self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.tc.amp == "fp16")
            self.trainable = [p for p in self.model.parameters() if p.requires_grad]
            self._text_encoder_checked = not self.tc.train_text_encoder
            self.state = TrainState(world_size=self.dist.world_size, batch_size=self.tc.batch_size,
                                    grad_accum=self.tc.grad_accum)
            if resume is not None:
                self._restore(resume)
            else:
                seed_everything(self.tc.seed + self.dist.rank)  # the official per-rank seed
            self.ddp_wrapper = self._wrap(self.wrapper)
        except BaseException:
            self.log.close()
            _abandon_run_dir(self.run_dir, self._claim)
            raise
        self.last_checkpoint: Path | None = resume.path if resume is not None else None
        self.stop = False  # set by a hook (MaxSteps) to end the run after the current step
        self.epoch_complete = False  # the last epoch run went to its end (set before the after_epoch hooks)
        self.outcome: StepOutcome | None = None  # the last optimiser step (set before the after_step hooks)
        self.t_start = time.time()  # reset when `fit` starts
        self.hooks: list[HookBase] = []
        self.register_hooks(default_hooks())

    def register_hooks(self, hooks: list[HookBase]) -> None:
        """Append hooks; they run after the ones registered before, in list order."""
        for hook in hooks:
            hook.trainer = self
        self.hooks.extend(hooks)

    # ------------------------------------------------------------------ setup

    def _build_model(self) -> nn.Module:
        from vdit.models.vdit import VDIT

        model = VDIT.from_config(self.cfg.model, torch_dtype=frozen_weights_dtype(self.tc.amp))
        if self.tc.train_text_encoder:
            model.text_encoder.text_backbone.float()  # trained weights (and their AdamW moments) stay fp32
            set_text_encoder_trainable(model, True)
        if self.tc.init_from and self.resume is None:
            info = load_init_weights(model, self.tc.init_from, tuple(self.tc.init_exclude))
            excluded = f", {info['excluded']} excluded by {list(self.tc.init_exclude)}" if info["excluded"] else ""
            self.log.info(f"initialised {info['loaded']} tensors from {self.tc.init_from}{excluded}")
        model.to(self.device)
        model.train()
        return model

    def _set_up_speed_levers(self) -> None:
        """Issue 17 (docs/training.md "Speed"): per-sentence caches of the frozen text encoders; the value
        checks of the matcher and the loss moved to the host (`check_targets_on_host`); opt-in compile."""
        model, tc = self.model, self.tc
        notes = [f"frozen weights {str(frozen_weights_dtype(tc.amp) or torch.float32).replace('torch.', '')}"]
        dropout = self.cfg.model.backbone.official_frozen_dropout
        if tc.text_cache > 0 and not dropout:
            # On CUDA the entries wait in host memory: no device memory; copied back without a sync.
            storage = "cpu" if self.device.type == "cuda" else None
            model.backbone.prompt_cache = TextFeatureCache(tc.text_cache, storage)
            if not tc.train_text_encoder:
                model.text_encoder.feature_cache = TextFeatureCache(tc.text_cache, storage)
            notes.append(f"text cache {tc.text_cache} sentences (T2V text tower"
                         f"{'' if tc.train_text_encoder else ' and RoBERTa'})")
        elif tc.text_cache > 0:
            notes.append("text cache off (backbone.official_frozen_dropout: the encoders run with dropout)")
        if tc.compile == "head":
            n = compile_head(self.wrapper, backend=tc.compile_backend)
            notes.append(f"torch.compile of {n} head/loss modules ({tc.compile_backend})")
        self.log.info("speed levers: " + "; ".join(notes))

    def _wrap(self, wrapper: TrainingWrapper) -> nn.Module:
        """DDP around the whole training step (forward, matching, refinement, loss)."""
        if not self.dist.distributed:
            return wrapper
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # Frozen foundation buffers never change: no need to broadcast them every forward (the keyword
        # changed name in recent torch releases).
        params = inspect.signature(DistributedDataParallel.__init__).parameters
        no_sync_buffers = {"forward_sync_buffers": False} if "forward_sync_buffers" in params \
            else {"broadcast_buffers": False}
        return DistributedDataParallel(wrapper, device_ids=ids, find_unused_parameters=self.tc.find_unused_parameters,
                                       **no_sync_buffers)

    def _restore(self, ckpt: Checkpoint) -> None:
        load_model_weights(ckpt, self.model)
        load_optimizer(ckpt, self.optimizer)
        self.scheduler.load_state_dict(ckpt.scheduler)
        if ckpt.scaler and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt.scaler)
        saved = ckpt.state
        self.state = TrainState(**{**saved.__dict__, "world_size": self.dist.world_size,
                                   "batch_size": self.tc.batch_size, "grad_accum": self.tc.grad_accum})
        same_layout = (saved.world_size, saved.batch_size, saved.grad_accum) == \
            (self.dist.world_size, self.tc.batch_size, self.tc.grad_accum)
        if not same_layout:
            self.log.info(f"resuming with {self.dist.world_size} process(es) x batch {self.tc.batch_size} x accum "
                          f"{self.tc.grad_accum} instead of {saved.world_size} x {saved.batch_size} x "
                          f"{saved.grad_accum}: not an exact continuation")
            done = saved.batch_in_epoch * saved.batch_size * saved.world_size
            per_batch = self.tc.batch_size * self.dist.world_size
            position = done // per_batch
            self.state.batch_in_epoch = position - position % self.tc.grad_accum
        if not load_rng(ckpt, self.dist.rank, self.device) or not same_layout:
            seed_everything(self.tc.seed + self.dist.rank + saved.global_step)
        self.log.info(f"resumed from {ckpt.path} (epoch {saved.epoch + 1}, step {saved.global_step})")

    # ------------------------------------------------------------------ loop

    def _autocast(self):
        if self.tc.amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=AMP_DTYPES[self.tc.amp])

    def _loader(self, epoch: int, start: int):
        from torch.utils.data import DataLoader

        set_epoch(self.dataset, epoch)
        self.sampler.set_epoch(epoch, start)
        generator = torch.Generator().manual_seed(self.tc.seed + epoch)
        return DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=self.tc.num_workers,
                          collate_fn=_collate, generator=generator, persistent_workers=False,
                          pin_memory=self.device.type == "cuda")

    def _to_device(self, batch: Any) -> Any:
        """Check the targets on the host, then upload the batch: from pinned memory (the loader pins it on
        CUDA) the copies are asynchronous, otherwise each blocks until the device is idle."""
        check_targets_on_host(batch)
        if self.device.type != "cuda":
            return batch.to(self.device)
        moved = {k: v.to(self.device, non_blocking=v.is_pinned()) if isinstance(v, torch.Tensor) else v
                 for k, v in batch.__dict__.items()}
        return type(batch)(**moved)

    def _micro_step(self, batch: Any, sync: bool) -> tuple[dict[str, float] | None, list[str]]:
        """Forward + backward of one micro-batch. Returns (loss values to log, []) or (None, non-finite terms).

        The criterion returns unweighted terms and their weighted total `loss` (official convention);
        the values to log hold both, named as the official engine logs them (`loss_log_values`).
        Non-finite terms are named by the criterion's keys.
        """
        batch = self._to_device(batch)
        no_sync = getattr(self.ddp_wrapper, "no_sync", None)
        ctx = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
        with ctx:
            with self._autocast():
                losses = self.ddp_wrapper(batch)
            loss = losses["loss"]
            # The micro-step's one device->host transfer: every term at once, for the finiteness check
            # and the logs (one read per term would wait on the device 29 times).
            names = list(losses)
            values = torch.stack([losses[k].detach().float() for k in names]).cpu()
            finite = torch.isfinite(values).tolist()
            local_bad = not finite[names.index("loss")]
            if du.any_rank(local_bad, self.device) if self.dist.distributed else local_bad:
                bad_terms = sorted(k for k, ok in zip(names, finite) if not ok)
                return None, bad_terms or ["(another rank)"]
            self.scaler.scale(loss / self.tc.grad_accum).backward()
        return loss_log_values(dict(zip(names, values.tolist())), self.criterion.weight_dict), []

    def _optimizer_step(self) -> float:
        """Unscale, clip, step. Returns the gradient norm before clipping (may be non-finite)."""
        if not self._text_encoder_checked:
            self._check_text_encoder_grads()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.tc.clip_max_norm if self.tc.clip_max_norm > 0 else math.inf
        norm = float(torch.nn.utils.clip_grad_norm_(self.trainable, max_norm))
        if not math.isfinite(norm) and not self.scaler.is_enabled():
            return norm  # caller skips the step; fp16 loss scaling handles inf itself (skips and backs off)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return norm

    def _check_text_encoder_grads(self) -> None:
        """train_text_encoder must mean that the text encoder learns: fail loudly when no gradient reaches it."""
        self._text_encoder_checked = True
        params = [p for n, p in self.model.named_parameters() if n.startswith(TEXT_ENCODER_PREFIX)]
        if params and all(p.grad is None for p in params):
            raise ConfigError("train.train_text_encoder=true but no gradient reached the text encoder in the first "
                              "step; set train.train_text_encoder=false or report this as a bug")

    def checkpoint(self) -> None:
        """Save a checkpoint of the run as it stands (`vdit.engine.checkpoint.save_checkpoint`)."""
        self.last_checkpoint = save_checkpoint(
            self.run_dir, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler,
            state=self.state, run_config=self.cfg, dist_info=self.dist, keep=self.tc.keep_checkpoints,
        ) or self.last_checkpoint

    def fit(self) -> TrainResult:
        """Train to the end of the schedule (or `max_steps`); returns where the results are. A short loop;
        what happens around each step is the hooks' (`vdit.engine.hooks`)."""
        st = self.state
        self.t_start = time.time()
        try:
            self._call_hooks("before_train")
            for epoch in range(st.epoch, self.tc.epochs):
                if self.stop:
                    break
                st.epoch = epoch
                self._call_hooks("before_epoch")
                self._run_epoch(epoch)
                self._call_hooks("after_epoch")
            return self._finish()
        finally:
            self.log.close()
            if self._claim is not None:
                self._claim[2].release()

    def _call_hooks(self, stage: str) -> None:
        for hook in self.hooks:
            getattr(hook, stage)()

    def _run_epoch(self, epoch: int) -> None:
        """The rest of epoch `epoch`: micro-batches accumulate into optimiser steps, each followed by the
        hooks' `after_step`; stops early when a hook sets `stop`."""
        st = self.state
        window: list[dict[str, float]] = []
        bad: list[str] = []
        for micro, batch in enumerate(self._loader(epoch, st.batch_in_epoch), start=st.batch_in_epoch):
            last_of_window = (micro + 1) % self.tc.grad_accum == 0
            if not bad:  # after a non-finite loss the window's remaining micro-batches are not run
                values, bad = self._micro_step(batch, sync=last_of_window)
                if values is not None:
                    window.append(values)
            if not last_of_window:
                continue
            self.outcome = self._step(window, bad)
            st.batch_in_epoch = micro + 1
            self._call_hooks("after_step")
            window, bad = [], []
            if self.stop:
                break
        self.epoch_complete = st.batch_in_epoch == len(self.sampler)
        if self.epoch_complete:
            st.epoch, st.batch_in_epoch = epoch + 1, 0

    def _step(self, window: list[dict[str, float]], bad: list[str]) -> StepOutcome:
        """The optimiser step that ends an accumulation window, unless its loss (`bad`: the non-finite
        terms) or, without fp16 loss scaling, its gradient norm is non-finite. Counts the step."""
        norm, skipped = math.nan, None
        if bad:
            window, skipped = [], f"non-finite loss ({', '.join(bad)})"
        else:
            norm = self._optimizer_step()
            if not math.isfinite(norm) and not self.scaler.is_enabled():
                skipped = f"non-finite gradient norm ({norm})"
        self.optimizer.zero_grad(set_to_none=True)
        self.state.global_step += 1
        return StepOutcome(window, norm, skipped)

    def _finish(self) -> TrainResult:
        """The finished model's weights (when the schedule ran to its end) and the last record."""
        st, tc = self.state, self.tc
        final_dir = None
        if st.epoch >= tc.epochs:
            final_dir = self.run_dir / FINAL_DIR
            if self.dist.is_main:
                self.model.save_pretrained(final_dir)
            du.barrier()
            self.log.info(f"done: {st.global_step} steps; weights in {final_dir}")
        else:
            self.log.info(f"stopped after {st.global_step} steps (train.max_steps={tc.max_steps}); continue with "
                          f"--resume {self.run_dir} --set train.max_steps=0 (or a larger value)")
        self.log.record("done" if final_dir else "stopped", step=st.global_step, epoch=st.epoch,
                        skipped_steps=st.skipped_steps, elapsed_s=time.time() - self.t_start)
        return TrainResult(self.run_dir, st, final_dir, self.last_checkpoint)


def _collate(samples):
    from vdit.data.types import collate_clips

    batch = collate_clips(samples, size_divisibility=SIZE_DIVISIBILITY)
    return PinnableBatch(**batch.__dict__)


class PinnableBatch(ClipBatch):
    """A ClipBatch the DataLoader can pin (its pin_memory thread calls `pin_memory()` on batches that have
    one), so that the upload to CUDA is asynchronous. Module-level: loader workers pickle it."""

    def pin_memory(self) -> "PinnableBatch":
        return PinnableBatch(**{k: v.pin_memory() if isinstance(v, torch.Tensor) else v
                                for k, v in self.__dict__.items()})
