import numpy as np
import pytest
from PIL import Image

from vdit.data.video_io import list_frame_files, read_frames_dir, read_image, read_video_frames, write_video
from vdit.errors import DataError, InputError


def _frames(t=6, h=34, w=46):
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((t, h, w, 3), dtype=np.uint8)
    for i in range(t):
        out[i, ..., 0] = (xx * 5 + i * 20) % 256
        out[i, ..., 1] = (yy * 7) % 256
        out[i, ..., 2] = 128
    return out


def test_write_read_roundtrip(tmp_path):
    frames = _frames()
    path = write_video(tmp_path / "sub" / "clip.mp4", frames, fps=12.5)
    decoded, fps = read_video_frames(path)
    assert len(decoded) == len(frames)
    assert decoded[0].size == (46, 34) and decoded[0].mode == "RGB"
    assert fps == pytest.approx(12.5)
    err = np.abs(np.asarray(decoded[3], dtype=float) - frames[3]).mean()
    assert err < 12


def test_odd_sizes_are_padded_to_even(tmp_path):
    path = write_video(tmp_path / "odd.mp4", _frames(t=2, h=33, w=45), fps=10)
    decoded, _ = read_video_frames(path)
    assert decoded[0].size == (46, 34)


def test_read_real_video(shared_dir):
    frames, fps = read_video_frames(shared_dir / "videos" / "running_dog.mp4")
    assert len(frames) > 10 and fps > 0


def test_bad_videos(tmp_path):
    with pytest.raises(DataError, match="missing.mp4"):
        read_video_frames(tmp_path / "missing.mp4")
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(b"this is not a video" * 10)
    with pytest.raises(DataError, match="garbage.mp4"):
        read_video_frames(bad)
    with pytest.raises(InputError):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8), dtype=np.uint8), fps=5)
    with pytest.raises(InputError):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), dtype=np.float32), fps=5)


def test_frames_dir(tmp_path):
    for i, f in enumerate(_frames(t=3)):
        Image.fromarray(f).save(tmp_path / f"{2 - i:05d}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    assert [p.name for p in list_frame_files(tmp_path)] == ["00000.png", "00001.png", "00002.png"]
    frames = read_frames_dir(tmp_path)
    assert len(frames) == 3 and np.array_equal(np.asarray(frames[0]), _frames(t=3)[2])
    with pytest.raises(DataError, match="empty"):
        read_frames_dir(tmp_path / "empty")
    (tmp_path / "00003.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="00003.png"):
        read_frames_dir(tmp_path)
    with pytest.raises(DataError, match="nope.jpg"):
        read_image(tmp_path / "nope.jpg")
