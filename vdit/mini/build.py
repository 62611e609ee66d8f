"""`vdit mini pretrain`: build the miniature world's foundation models and save them in the real layouts.

    OUT/t2v/{unet,vae,text_encoder,tokenizer,scheduler}/ + model_index.json   ModelScope's diffusers layout
    OUT/clip_vision/        CLIPModel (text + vision towers) + preprocessor + tokenizer, as LAION publishes it
    OUT/text_encoder/       RobertaModel + RobertaTokenizer, as roberta-base
    OUT/mini_foundation.json  manifest: seed, plan, benchmark, vocabulary, final metrics, file hashes
    OUT/pretrain_log.jsonl    loss records of every stage and wall times

The T2V text encoder is the CLIP text tower (ModelScope's is the OpenCLIP text tower: the same idea).
The folder is written beside OUT first and moved into place at the end, so a crash never leaves a
half-written model folder.
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

from vdit.engine.checkpoint import sha256_file
from vdit.errors import ConfigError
from vdit.fileio import dumps_json
from vdit.mini.data import (
    MINI_BENCHMARK,
    BenchmarkSpec,
    CaptionCorpus,
    ensure_benchmark,
    load_corpus,
    vocabulary,
)
from vdit.mini.pretrain import (
    PretrainPlan,
    clip_text_tower,
    train_clip,
    train_roberta,
    train_t2v_unet,
    train_vae,
)
from vdit.models.foundation import quiet_libraries
from vdit.models.foundation_arch import CLIP_MEAN, CLIP_STD, SCHEDULER, arch

MANIFEST = "mini_foundation.json"
LOG_FILE = "pretrain_log.jsonl"
MANIFEST_FORMAT = "vdit-mini-foundation-1"
BENCHMARK_SEED = 0  # the miniature world has one benchmark; --seed seeds the models' training
T2V_PIPELINE = "TextToVideoSDPipeline"  # diffusers' class for ModelScope folders (model_index.json)
# Prompts of the sample grid: referring expressions (the captions VD-IT feeds the UNet) for seen
# colour+shape pairs, then one held-out pair (never in training: a compositional probe).
SAMPLE_PROMPTS = (
    "the large red circle moving right",
    "the large green triangle moving up",
    "the small yellow star moving left",
    "the large blue diamond moving down",
    "the large red star moving right",
)
SAMPLE_SEED = 0


def t2v_model_index() -> dict[str, Any]:
    import diffusers

    return {
        "_class_name": T2V_PIPELINE,
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet3DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }


def save_t2v(folder: str | Path, unet: Any, vae: Any, text_encoder: Any, tokenizer: Any) -> Path:
    """The diffusers text-to-video folder; the scheduler is ModelScope's DDIM config (vdit reads it into
    a DDPMScheduler, as VD-IT does)."""
    from diffusers import DDIMScheduler

    folder = Path(folder)
    with quiet_libraries():
        unet.save_pretrained(folder / "unet")
        vae.save_pretrained(folder / "vae")
        text_encoder.save_pretrained(folder / "text_encoder")
        tokenizer.save_pretrained(folder / "tokenizer")
        DDIMScheduler(**SCHEDULER).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(dumps_json(t2v_model_index(), nonfinite="error", indent=2,
                                                        sort_keys=True) + "\n")
    return folder


def save_clip(folder: str | Path, clip: Any, tokenizer: Any) -> Path:
    """The whole CLIPModel with its image processor and tokenizer (vdit loads only the vision tower)."""
    folder = Path(folder)
    size = int(clip.config.vision_config.image_size)
    with quiet_libraries():
        # Imported here: transformers warns (once, at import) that it falls back to its PIL backend.
        from transformers import CLIPImageProcessor

        clip.save_pretrained(folder)
        CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                           image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def save_text_encoder(folder: str | Path, roberta: Any, tokenizer: Any) -> Path:
    folder = Path(folder)
    with quiet_libraries():
        roberta.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def file_table(root: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {bytes, sha256}} of every model file under root (manifest and log excluded)."""
    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel in (MANIFEST, LOG_FILE):
            continue
        out[rel] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return out


def _prepare_out(out: Path) -> Path:
    """A fresh staging folder beside `out`; `out` itself must be new, empty or an earlier mini foundation."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise ConfigError(f"{out} exists and is not a mini foundation folder (no {MANIFEST}); choose another --out")
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def _publish(staging: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


class JsonlLog:
    """Appends one json object per line, flushed at once (a crash keeps what was logged)."""

    def __init__(self, path: Path):
        self.file = open(path, "w", encoding="utf-8")
        self.start = time.perf_counter()

    def __call__(self, record: dict[str, Any]) -> None:
        record = {**record, "elapsed_s": round(time.perf_counter() - self.start, 1)}
        self.file.write(dumps_json(record) + "\n")  # a diverged loss is null, the line stays JSON
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _last_done(records: list[dict[str, Any]], stage: str) -> dict[str, Any]:
    done = [r for r in records if r.get("stage") == stage and r.get("event") == "done"]
    return {k: v for k, v in done[-1].items() if k not in ("stage", "event", "loop_s", "elapsed_s")} if done else {}


def build_mini_foundation(
    out: str | Path,
    *,
    data_dir: str | Path,
    seed: int = 0,
    plan: PretrainPlan | None = None,
    samples_path: str | Path | None = None,
    sample_steps: int | None = None,
    benchmark: BenchmarkSpec = MINI_BENCHMARK,
    arch_name: str = "mini",
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate the benchmark if needed, train the four models, save them under `out`; returns the
    manifest (with the stages' wall times added)."""
    from vdit.mini.sampling import DEFAULT_STEPS, load_t2v, save_grid
    from vdit.models.tokenizers import build_mini_clip_tokenizer, build_mini_roberta_tokenizer

    plan = plan or PretrainPlan()
    out = Path(out).expanduser()
    staging = _prepare_out(out)
    records: list[dict[str, Any]] = []
    log_file = JsonlLog(staging / LOG_FILE)

    def log(record: dict[str, Any]) -> None:
        records.append(record)
        log_file(record)

    walls: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        data_root, wrote = ensure_benchmark(data_dir, BENCHMARK_SEED, benchmark)
        echo(f"{'wrote' if wrote else 'using'} the generated benchmark at {data_root}")
        train = load_corpus(data_root, "train")
        valid = load_corpus(data_root, "valid") if benchmark.num_valid_videos else None
        words = vocabulary([train])
        clip_tok = build_mini_clip_tokenizer(words)
        rob_tok = build_mini_roberta_tokenizer(words)
        walls["data"] = time.perf_counter() - t0
        log({"stage": "data", "event": "done", "videos": len(train), "vocabulary": len(words),
             "wall_s": round(walls["data"], 1)})

        def timed(stage: str, fn: Callable[[], Any]) -> Any:
            start = time.perf_counter()
            result = fn()
            walls[stage] = time.perf_counter() - start
            return result

        clip = timed("clip", lambda: train_clip(train, clip_tok, plan.clip, arch_name=arch_name, seed=seed,
                                                log=log, progress=progress))
        save_clip(staging / "clip_vision", clip, clip_tok)
        text_encoder = clip_text_tower(clip)
        vae = timed("vae", lambda: train_vae(train, plan.vae, arch_name=arch_name, seed=seed,
                                             eval_corpus=valid, log=log, progress=progress))
        unet = timed("t2v", lambda: train_t2v_unet(train, vae, text_encoder, clip_tok, plan.t2v, arch_name=arch_name,
                                                   seed=seed, eval_corpus=valid, log=log, progress=progress))
        save_t2v(staging / "t2v", unet, vae, text_encoder, clip_tok)
        roberta = timed("roberta", lambda: train_roberta(train, rob_tok, plan.roberta, arch_name=arch_name,
                                                         seed=seed, log=log, progress=progress))
        save_text_encoder(staging / "text_encoder", roberta, rob_tok)

        if samples_path is not None:
            start = time.perf_counter()
            clips, labels = sample_grid_clips(load_t2v(staging / "t2v"), train, valid,
                                              steps=sample_steps or DEFAULT_STEPS)
            save_grid(clips, labels, samples_path)
            walls["samples"] = time.perf_counter() - start
            echo(f"wrote generated clips to {samples_path}")

        manifest = {
            "format": MANIFEST_FORMAT,
            "seed": seed,
            "arch": arch_name,
            # The arch table with the VAE's measured scaling factor (the one its saved config holds).
            "arch_config": {**arch(arch_name), "vae": {**arch(arch_name)["vae"],
                                                      "scaling_factor": float(vae.config.scaling_factor)}},
            "benchmark": {"seed": BENCHMARK_SEED, **asdict(benchmark)},
            "plan": asdict(plan),
            "vocabulary": words,
            "vae_scaling_factor": float(vae.config.scaling_factor),
            "final": {stage: _last_done(records, stage) for stage in ("clip", "vae", "t2v", "roberta")},
            "versions": _versions(),
            "files": file_table(staging),
        }
        (staging / MANIFEST).write_text(dumps_json(manifest, indent=2) + "\n")
        walls["total"] = time.perf_counter() - t0
        log({"stage": "all", "event": "done", "wall_s": {k: round(v, 1) for k, v in walls.items()}})
    finally:
        log_file.close()
    _publish(staging, out)
    return {**manifest, "wall_s": {k: round(v, 1) for k, v in walls.items()}}


def _versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {"torch": torch.__version__.split("+")[0], "diffusers": diffusers.__version__,
            "transformers": transformers.__version__}


def sample_grid_clips(models: Any, train: CaptionCorpus, valid: CaptionCorpus | None, *,
                      steps: int) -> tuple[torch.Tensor, list[str]]:
    """Clips for the sample grid: SAMPLE_PROMPTS, a real scene caption of an unseen (valid) video next to
    that video's real frames, and the empty prompt."""
    from vdit.mini.sampling import DEFAULT_FRAMES, sample_clips

    ref = valid if valid is not None else train
    num_frames = min(DEFAULT_FRAMES, ref.frames.shape[1])
    h, w = ref.frames.shape[2:4]
    scene = ref.scene_captions[0]
    prompts = [*SAMPLE_PROMPTS, scene, ""]
    clips = sample_clips(models, prompts, num_frames=num_frames, height=h, width=w, steps=steps, seed=SAMPLE_SEED)
    real = ref.frames[0, :num_frames][None]
    rows = torch.cat([clips[: len(SAMPLE_PROMPTS) + 1], real, clips[len(SAMPLE_PROMPTS) + 1:]])
    labels = [*SAMPLE_PROMPTS, f"generated: {scene}", f"real clip ({ref.video_ids[0]}): {scene}", "(empty prompt)"]
    return rows, labels
