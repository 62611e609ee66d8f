import os
from pathlib import Path

import pytest

# Tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

# Tiny models are too small to gain from intra-op threads, and OpenMP spin-waiting makes them many times
# slower whenever another process competes for the cores. VDIT_TEST_THREADS overrides.
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("VDIT_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout (real fixtures); skip where a user's clone lacks it."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (only the project's own machines have it)")
    return SHARED
