"""DDIM sampling from a saved T2V folder and the image grid."""
import numpy as np
import pytest
import torch

from vdit.errors import ConfigError
from vdit.mini.sampling import grid_image, load_t2v, sample_clips


def test_sample_clips_deterministic(smoke_build):
    out, _, _ = smoke_build
    models = load_t2v(out / "t2v")
    assert type(models.scheduler).__name__ == "DDIMScheduler"
    a = sample_clips(models, ["the red circle", ""], num_frames=3, steps=2, seed=0)
    b = sample_clips(models, ["the red circle", ""], num_frames=3, steps=2, seed=0)
    c = sample_clips(models, ["the red circle", ""], num_frames=3, steps=2, seed=1)
    assert a.shape == (2, 3, 64, 64, 3) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ConfigError):
        sample_clips(models, ["x"], height=60, steps=1)
    with pytest.raises(ConfigError):
        sample_clips(models, [], steps=1)


def test_grid_image_layout():
    clips = np.zeros((2, 3, 8, 10, 3), dtype=np.uint8)
    clips[1, 2] = 255
    img = grid_image(clips, ["a", "b"], scale=2)
    assert img.size == (3 * 22 - 2, 2 * (14 + 16 + 2))
    px = np.asarray(img)
    assert (px[14 + 16 + 2 + 14: 14 + 16 + 2 + 14 + 16, 2 * 22: 2 * 22 + 20] == 255).all()
    with pytest.raises(ConfigError):
        grid_image(clips, ["only one"])
