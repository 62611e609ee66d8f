import os
from pathlib import Path

import pytest

# Tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# Triton's CPU interpreter for the fused deformable-attention kernel tests: triton builds its standard
# library once, at its first import, as interpreted or compiled functions, so the mode must be set before
# anything (torch.compile's inductor included) imports triton. Only without a GPU: there the kernels compile.
import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Tiny models are too small to gain from intra-op threads, and OpenMP spin-waiting makes them many times
# slower whenever another process competes for the cores. VDIT_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("VDIT_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """Random tiny foundation models (t2v/, clip_vision/, text_encoder/) written once per session in the
    real layouts; tests that alter them work on a copy."""
    from vdit.testing import build_tiny_foundation

    return build_tiny_foundation(tmp_path_factory.mktemp("tiny_foundation"), seed=0)


@pytest.fixture(scope="session")
def tiny_weights(tiny_root, tmp_path_factory) -> Path:
    """A tiny random VD-IT written by VDIT.save_pretrained (its config names `tiny_root`)."""
    from vdit.config import tiny_config
    from vdit.models.vdit import VDIT

    torch.manual_seed(0)
    model = VDIT.from_config(tiny_config(tiny_root))
    return model.save_pretrained(tmp_path_factory.mktemp("tiny_weights") / "tiny")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (real fixtures); skip where a user's clone lacks it."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (only the project's own machines have it)")
    return SHARED
