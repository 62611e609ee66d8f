"""Fixtures for the `vdit app` tests: the built-in model (what the app runs by default) and its demo clip."""
from __future__ import annotations

import pytest

# Small windows, so a 12-frame clip runs as several windows (the app's long-video path).
TEST_WINDOW = 5


@pytest.fixture(scope="session")
def app_predictor():
    from vdit.mini.builtin import builtin_predictor

    return builtin_predictor(device="cpu", window=TEST_WINDOW, amp=False)


@pytest.fixture(scope="session")
def demo_sample(tmp_path_factory):
    """The generated miniature-world clip as the app offers it (an mp4) and its two sentences."""
    from vdit.app.process import generated_sample

    return generated_sample(tmp_path_factory.mktemp("app_samples"))
