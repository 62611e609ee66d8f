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
def shared_dir() -> Path:
    """../shared beside the checkout (real fixtures); skip where a user's clone lacks it."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (only the project's own machines have it)")
    return SHARED
