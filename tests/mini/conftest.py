import pytest

from vdit.mini.data import BenchmarkSpec

# A benchmark small enough for seconds-long smoke runs (64x64 like the real one, fewer videos and frames).
SMOKE_SPEC = BenchmarkSpec(num_train_videos=4, num_valid_videos=2, num_heldout_videos=0, num_frames=4)


def _smoke_plan():
    from vdit.mini.pretrain import PretrainPlan, StageConfig

    stage = dict(steps=2, lr=1e-3, warmup_steps=1)
    return PretrainPlan(clip=StageConfig(batch_size=4, **stage), vae=StageConfig(batch_size=2, **stage),
                        t2v=StageConfig(batch_size=8, **stage), roberta=StageConfig(batch_size=4, **stage))


@pytest.fixture(scope="session")
def smoke_spec():
    return SMOKE_SPEC


@pytest.fixture
def smoke_plan():
    """Two steps per model, small batches (a fresh plan per test)."""
    return _smoke_plan()


@pytest.fixture(scope="session")
def smoke_bench(tmp_path_factory):
    from vdit.mini.data import ensure_benchmark

    root, _ = ensure_benchmark(tmp_path_factory.mktemp("mini_bench"), seed=0, spec=SMOKE_SPEC)
    return root


@pytest.fixture(scope="session")
def smoke_corpora(smoke_bench):
    from vdit.mini.data import load_corpus

    return load_corpus(smoke_bench, "train"), load_corpus(smoke_bench, "valid")


@pytest.fixture(scope="session")
def smoke_tokenizers(smoke_corpora):
    from vdit.mini.data import vocabulary
    from vdit.models.tokenizers import build_mini_clip_tokenizer, build_mini_roberta_tokenizer

    words = vocabulary([smoke_corpora[0]])
    return build_mini_clip_tokenizer(words), build_mini_roberta_tokenizer(words)


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory, smoke_bench):
    """`build_mini_foundation` end to end with two steps per model (folder, manifest, grid path)."""
    from vdit.mini.build import build_mini_foundation

    base = tmp_path_factory.mktemp("mini_build")
    out, grid = base / "foundation", base / "samples.png"
    manifest = build_mini_foundation(out, data_dir=smoke_bench, plan=_smoke_plan(), samples_path=grid,
                                     sample_steps=2, benchmark=SMOKE_SPEC, progress=False, echo=lambda _m: None)
    return out, manifest, grid
