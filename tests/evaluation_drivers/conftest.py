"""Tiny benchmarks in the real on-disk formats, a tiny random VD-IT, and a colour oracle.

Every video shows a red box (object 1) and a green box (object 2) moving over a dark noisy background
(64 x 96 frames, the model's minimum short side, so nothing is resized). Texts name the colour(s).

`ColourOracle` stands in for VDIT with its inference verbs (`encode_video`, `segment`): its mask logits
mark the pixels of the colour(s) its text names. Query 0 gets that mask and the highest score, the other
queries the complement with lower scores, so a driver that mixes up queries, frames, sizes or ids scores badly,
and a correct driver scores (close to) 1.
"""
import numpy as np
import pytest
import torch
from torch import nn

from vdit.models.vdit import VDIT

H, W = 64, 96
SHORT = 64
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60)}
BOXES = {1: (8, 30, 6, 40), 2: (30, 58, 50, 90)}  # object id -> (y0, y1, x0, x1) at frame 0
TEXTS = {1: "the red box", 2: "the green box"}


def video_frames(t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """frames uint8 [t,H,W,3] and object ids uint8 [t,H,W]: red box 1, green box 2, moving 2 px/frame."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 50, (t, H, W, 3), dtype=np.uint8)
    ids = np.zeros((t, H, W), dtype=np.uint8)
    for i in range(t):
        for obj, colour in zip((1, 2), COLOURS.values()):
            y0, y1, x0, x1 = BOXES[obj]
            dx = 2 * i * (1 if obj == 1 else -1)
            frames[i, y0:y1, x0 + dx:x1 + dx] = colour
            ids[i, y0:y1, x0 + dx:x1 + dx] = obj
    return frames, ids


# ---------------------------------------------------------------------------------------------- oracle


class ColourOracle(nn.Module):
    """VDIT's inference verbs (`encode_video`, `segment`); masks = pixels of the colours named in the
    text (see module doc). `calls` counts `segment` calls."""

    num_queries = 3
    query_logits = (3.0, 0.0, -1.0)
    mask_logit = 8.0

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.calls = 0

    def _mask(self, frames, text):
        from vdit.models.inputs import IMAGENET_MEAN, IMAGENET_STD

        rgb = frames * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        out = torch.zeros_like(r, dtype=torch.bool)
        if "red" in text:
            out |= (r > 0.5) & (g < 0.4) & (b < 0.4)
        if "green" in text:
            out |= (g > 0.5) & (r < 0.4) & (b < 0.4)
        return out

    def encode_video(self, frames, check_values=True):
        """No visual features: the oracle reads the padded frames themselves in `segment`."""
        from vdit.models.backbone.diffusion_backbone import VisualFeatures
        from vdit.models.padding import pad_to_divisible
        from vdit.models.segmentation import EncodedVideo

        t, _, h, w = frames.shape
        padded, pad = pad_to_divisible(frames[None])
        z = frames.new_zeros((1, 1, t, 1, 1))
        visual = VisualFeatures(clip_tokens=None, vae_tap=frames.new_zeros((t, 1, 1, 1)), latent_mean=z,
                                latent_std=z, batch=1, frames=t)
        return EncodedVideo(visual=visual, frames=padded, pad_mask=pad, sizes=torch.tensor([[h, w]]), size=(h, w))

    def segment(self, video, texts, queries="best", valid_indices=None):
        from vdit.models.segmentation import SegmentOutput

        self.calls += 1
        frames = video.frames[0]
        if valid_indices is not None:
            frames = frames[list(valid_indices)]
        s, t = len(texts), frames.shape[0]
        masks = torch.stack([self._mask(frames.float(), text) for text in texts])  # [S,t,H,W]
        good = torch.where(masks, self.mask_logit, -self.mask_logit)
        per_query = torch.stack([good] + [-good] * (self.num_queries - 1), dim=2)  # [S,t,Q,H,W]
        logits = torch.tensor(self.query_logits).view(1, 1, -1).expand(s, t, -1)
        scores = logits.sigmoid().mean(1)
        best = scores.argmax(-1)
        if queries == "best":
            mask_logits, index = per_query[torch.arange(s), :, best][:, :, None], best[:, None]
        else:
            mask_logits, index = per_query, torch.arange(self.num_queries).expand(s, -1)
        return SegmentOutput(mask_logits=mask_logits, mask_queries=index, query_logits=logits, scores=scores,
                             best_query=best, size=video.size)


@pytest.fixture
def oracle():
    return ColourOracle()


# ---------------------------------------------------------------------------------------------- tiny model


@pytest.fixture(scope="session")
def drivers_model(tiny_weights):
    from vdit.models.vdit import VDIT

    return VDIT.from_pretrained(tiny_weights).eval()


@pytest.fixture
def bench_options():
    """BenchmarkOptions for the tiny data: CPU, the model's minimum short side."""
    from vdit.inference.benchmark_session import BenchmarkOptions

    def make(data_root, out_dir, **kw):
        kw.setdefault("short_side", SHORT)
        kw.setdefault("device", "cpu")
        return BenchmarkOptions(data_root=data_root, out_dir=out_dir, **kw)

    return make


@pytest.fixture
def fractions():
    """fractions(metrics, keys): every key is present and a float in [0, 1]."""
    def check(metrics: dict, keys) -> None:
        for key in keys:
            value = metrics[key]
            assert isinstance(value, float) and 0.0 <= value <= 1.0, (key, value)

    return check


# ---------------------------------------------------------------------------------------------- datasets


@pytest.fixture(scope="session")
def ytvos_root(tmp_path_factory):
    """Ref-YouTube-VOS layout, valid split with Annotations: 2 videos of 3 and 2 frames, 2 expressions each."""
    from vdit.data.ytvos_writer import write_ytvos_video

    root = tmp_path_factory.mktemp("ytvos")
    for k, (vid, t) in enumerate((("vid_a", 3), ("vid_b", 2))):
        frames, ids = video_frames(t, seed=k)
        write_ytvos_video(root, "valid", vid, frames, ids,
                          {str(i): {"exp": TEXTS[obj], "obj_id": obj} for i, obj in enumerate((1, 2))})
    return root


@pytest.fixture(scope="session")
def davis_root(tmp_path_factory):
    """A raw DAVIS-2017 + Ref-DAVIS text release, converted in place (ROOT/valid + ROOT/DAVIS)."""
    from vdit.data.davis import convert_davis_to_ytvos, write_davis_release

    root = tmp_path_factory.mktemp("davis")
    videos = {"blackswan": video_frames(3, seed=3), "bmx": video_frames(2, seed=4)}
    texts = {name: {obj: (TEXTS[obj], f"{TEXTS[obj]} moving", TEXTS[obj], f"a {TEXTS[obj]}") for obj in (1, 2)}
             for name in videos}
    write_davis_release(root, videos, {"train": [], "val": list(videos)}, texts)
    convert_davis_to_ytvos(root)
    return root


@pytest.fixture(scope="session")
def mevis_root(tmp_path_factory):
    """MeViS valid_u (with mask_dict.json): one video, a two-object and a one-object expression."""
    from vdit.data.mevis import write_mevis_video

    root = tmp_path_factory.mktemp("mevis")
    frames, ids = video_frames(3, seed=5)
    write_mevis_video(root, "valid_u", "mv_1", frames, ids,
                      {"0": {"exp": "the red and green boxes", "obj_id": [1, 2]}, "1": {"exp": "the green box", "obj_id": [2]}})
    return root


@pytest.fixture(scope="session")
def a2d_root(tmp_path_factory):
    """A2D-Sentences: one 4-frame video, frames 2 and 4 annotated, 3 test samples."""
    from vdit.data.a2d import A2DSample, write_a2d_dataset

    root = tmp_path_factory.mktemp("a2d")
    frames, ids = video_frames(4, seed=6)
    annotations = {(("clip_1"), f): ([1, 2], np.stack([ids[f - 1] == 1, ids[f - 1] == 2])) for f in (2, 4)}
    samples = {"test": [A2DSample(TEXTS[1], "clip_1", 2, 1), A2DSample(TEXTS[2], "clip_1", 2, 2),
                        A2DSample(TEXTS[2], "clip_1", 4, 2)]}
    return write_a2d_dataset(root, {"clip_1": list(frames)}, annotations, samples)


@pytest.fixture(scope="session")
def jhmdb_root(tmp_path_factory):
    """JHMDB-Sentences: one 3-frame video of the red box, two samples."""
    from vdit.data.jhmdb import jhmdb_sample, write_jhmdb_dataset

    base = tmp_path_factory.mktemp("jhmdb_base")
    root = base / "jhmdb_sentences"
    frames, ids = video_frames(3, seed=7)
    samples = [jhmdb_sample("wave_1", "wave", f, 3, TEXTS[1], prefix="./jhmdb_sentences") for f in (1, 3)]
    return write_jhmdb_dataset(root, {("wave", "wave_1"): (list(frames), ids == 1)}, samples)


@pytest.fixture(scope="session")
def refcoco_root(tmp_path_factory):
    """COCO root with refcoco: two images, three val expressions (converted)."""
    from vdit.data.refcoco import convert_refexp_to_coco, mask_to_polygons, write_coco_image, write_refer_dataset

    root = tmp_path_factory.mktemp("coco")
    images, anns, refs = [], [], []
    for k in range(2):
        frames, ids = video_frames(1, seed=8 + k)
        name = f"COCO_train2014_{k + 1:012d}.jpg"
        write_coco_image(root, name, frames[0])
        images.append({"id": k + 1, "file_name": name, "height": H, "width": W})
        for obj in (1, 2):
            mask = ids[0] == obj
            ys, xs = np.nonzero(mask)
            ann_id = 10 * (k + 1) + obj
            anns.append({"id": ann_id, "image_id": k + 1, "category_id": 1, "iscrowd": 0, "area": float(mask.sum()),
                         "segmentation": mask_to_polygons(mask),
                         "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)]})
    sentences = [(1, 1, 1), (1, 2, 2), (2, 2, 3)]  # (image, object, sentence id)
    for image_id, obj, sid in sentences:
        refs.append({"ref_id": sid, "ann_id": 10 * image_id + obj, "image_id": image_id, "split": "val",
                     "sentences": [{"sent": TEXTS[obj], "raw": TEXTS[obj], "tokens": TEXTS[obj].split(), "sent_id": sid}],
                     "category_id": 1, "file_name": images[image_id - 1]["file_name"], "sent_ids": [sid]})
    instances = {"info": {}, "licenses": [], "images": images, "annotations": anns,
                 "categories": [{"id": 1, "name": "box", "supercategory": "shape"}]}
    write_refer_dataset(root, "refcoco", refs, instances)
    convert_refexp_to_coco(root, "refcoco")
    return root
