"""Per-frame region similarity J and boundary accuracy F: the ONE implementation used by every evaluator.

The definitions reproduce `davis2017-evaluation` (`davis2017/metrics.py`) bit for bit (spec section 8):

* J (`db_eval_iou`): ``|S & G & ~V| / |(S | G) & ~V|``, and 1 when that union is empty.
* F (`db_eval_boundary` / `f_measure`): 1-pixel boundary maps (`_seg2bmap`) of both masks (each masked by
  ``~V`` first), each dilated with a disk of radius ``ceil(0.008 * diagonal)`` (cv2.dilate with
  `skimage.morphology.disk`), precision/recall of the matched boundary pixels, F = 2PR/(P+R).

Two levels of API:

* `region_jaccard`, `boundary_f_measure`: one (prediction, ground truth) pair of full-frame masks. Simple,
  used by MeViS and by the tests as the readable reference.
* `ObjectGeometry` + `pairwise_jf` (and `frame_jf` for one pair): the fast path used by the evaluators.
  Each object's boundary is computed once per frame on a crop around the object; a GT boundary is
  dilated once per frame, a predicted boundary only over the window of the GT boundary it is compared
  with, and pairs whose boundaries are farther apart than the radius are skipped. Every count is the
  same integer the full-frame formulas produce, so the resulting floats are identical.

The dilation is implemented here (no OpenCV, no scikit-image): the disk footprint is the union of its
horizontal chords, so the dilation is a few shifted ORs along the rows (one per chord width) followed by
vertical ORs of the shifted chord maps. Outside the image nothing contributes, which is what
cv2.dilate's default border does for a dilation.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Boundary tolerance as a fraction of the image diagonal (davis2017 `bound_th`).
BOUNDARY_THRESHOLD = 0.008
# J is 1 when the union is empty ("both masks empty" is a perfect answer).
EMPTY_UNION_JACCARD = 1.0


# --------------------------------------------------------------------------------------------------------
# Footprint, radius, boundary map, dilation
# --------------------------------------------------------------------------------------------------------
def disk_footprint(radius: int) -> np.ndarray:
    """The (2r+1)x(2r+1) boolean disk of `skimage.morphology.disk(r)`: ``x**2 + y**2 <= r**2``."""
    if radius < 0:
        raise ValueError(f"disk radius must be >= 0, got {radius}")
    offsets = np.arange(-radius, radius + 1)
    xx, yy = np.meshgrid(offsets, offsets)
    return (xx**2 + yy**2) <= radius**2


def disk_half_widths(radius: int) -> list[int]:
    """Half-width of the disk's horizontal chord at each |dy| = 0..r (the same set as `disk_footprint`)."""
    return [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUNDARY_THRESHOLD) -> int:
    """Dilation radius in pixels: `bound_th` itself when >= 1, else ceil(bound_th * image diagonal).

    The diagonal is computed as the official does (``np.linalg.norm(shape)`` = sqrt(H**2 + W**2)), so the
    ceil lands on the same integer (8 for 480x854, 10 for 480x1152).
    """
    if bound_th >= 1:
        if float(bound_th) != int(bound_th):
            raise ValueError(f"a boundary tolerance >= 1 is a pixel count and must be an integer, got {bound_th}")
        return int(bound_th)
    h, w = int(shape[0]), int(shape[1])
    diagonal = float(np.sqrt(float(h * h + w * w)))
    return int(np.ceil(bound_th * diagonal))


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """1-pixel boundary map of a binary mask (`_seg2bmap`: boundary shifted half a pixel to the origin).

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour (zeros
    beyond the image). The last row only compares with the right neighbour, the last column only with
    the lower one, and the bottom-right pixel is never a boundary pixel.
    """
    seg = np.asarray(seg).astype(bool)
    if seg.ndim != 2:
        raise ValueError(f"seg2bmap needs a 2-D mask, got shape {seg.shape}")
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    bmap = (seg ^ east) | (seg ^ south) | (seg ^ south_east)
    bmap[-1, :] = seg[-1, :] ^ east[-1, :]
    bmap[:, -1] = seg[:, -1] ^ south[:, -1]
    bmap[-1, -1] = False
    return bmap


def _or_shifted(row_map: np.ndarray, step: int) -> np.ndarray:
    """row_map OR itself shifted `step` columns left and right (zeros shifted in)."""
    out = row_map.copy()
    out[:, step:] |= row_map[:, :-step]
    out[:, :-step] |= row_map[:, step:]
    return out


def dilate_disk_unclipped(bmap: np.ndarray, radius: int) -> np.ndarray:
    """Dilation of `bmap` (h, w) by the disk of `radius`, on an (h+2r, w+2r) canvas.

    Output pixel (y, x) corresponds to input position (y - r, x - r); nothing is clipped, so the caller
    crops to the image (pixels outside the image are never set by cv2.dilate and never counted).
    The disk is the union of its horizontal chords: each chord width is a 1-D dilation of the rows,
    grown from the previous width by OR-ing two shifted copies, and the rows of the output are the ORs
    of the chords shifted vertically.
    """
    bmap = np.asarray(bmap, dtype=bool)
    h, w = bmap.shape
    r = int(radius)
    if r == 0:
        return bmap.copy()
    half_widths = disk_half_widths(r)
    rows = np.zeros((h, w + 2 * r), dtype=bool)
    rows[:, r: r + w] = bmap
    chords = {0: rows}
    width = 0
    for target in sorted(set(half_widths)):
        while width < target:
            # Covering [-m, m] shifted by +-step stays contiguous while step <= 2m + 1.
            step = min(target - width, 2 * width + 1)
            rows = _or_shifted(rows, step)
            width += step
        chords[target] = rows
    out = np.zeros((h + 2 * r, w + 2 * r), dtype=bool)
    for dy in range(-r, r + 1):
        out[r + dy: r + dy + h] |= chords[half_widths[abs(dy)]]
    return out


def dilate_disk(bmap: np.ndarray, radius: int) -> np.ndarray:
    """Same-size dilation of a full-frame boolean map by `disk_footprint(radius)` (cv2.dilate semantics)."""
    r = int(radius)
    h, w = np.asarray(bmap).shape
    return dilate_disk_unclipped(bmap, r)[r: r + h, r: r + w]


# --------------------------------------------------------------------------------------------------------
# Scalar measures from counts (shared by the simple and the fast path)
# --------------------------------------------------------------------------------------------------------
def jaccard_from_counts(intersection: int, union: int) -> float:
    """`db_eval_iou` for one frame from its pixel counts."""
    if union == 0:
        return EMPTY_UNION_JACCARD
    return int(intersection) / int(union)


def f_from_counts(n_pred_boundary: int, n_gt_boundary: int, pred_matched: int, gt_matched: int) -> float:
    """`f_measure` from boundary counts, with the official edge cases.

    pred_matched: predicted boundary pixels inside the dilated GT boundary (precision numerator);
    gt_matched: GT boundary pixels inside the dilated predicted boundary (recall numerator).
    """
    if n_pred_boundary == 0 and n_gt_boundary > 0:
        precision, recall = 1.0, 0.0
    elif n_pred_boundary > 0 and n_gt_boundary == 0:
        precision, recall = 0.0, 1.0
    elif n_pred_boundary == 0 and n_gt_boundary == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = int(pred_matched) / float(n_pred_boundary)
        recall = int(gt_matched) / float(n_gt_boundary)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


# --------------------------------------------------------------------------------------------------------
# Simple full-frame API
# --------------------------------------------------------------------------------------------------------
def _check_pair(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None) -> None:
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"ground truth {gt.shape} and prediction {pred.shape} must be equal 2-D shapes")
    if void is not None and void.shape != gt.shape:
        raise ValueError(f"void mask {void.shape} does not match the masks {gt.shape}")


def region_jaccard(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """J of one frame: IoU of the binary masks outside the void pixels; 1 when the union is empty."""
    gt = np.asarray(gt).astype(bool)
    pred = np.asarray(pred).astype(bool)
    _check_pair(gt, pred, void)
    keep = np.ones_like(gt) if void is None else ~np.asarray(void).astype(bool)
    inter = int(np.count_nonzero(gt & pred & keep))
    union = int(np.count_nonzero((gt | pred) & keep))
    return jaccard_from_counts(inter, union)


def boundary_f_measure(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None,
                       bound_th: float = BOUNDARY_THRESHOLD) -> float:
    """F of one frame: boundary precision/recall with a disk tolerance (`f_measure(pred, gt, void)`)."""
    gt = np.asarray(gt).astype(bool)
    pred = np.asarray(pred).astype(bool)
    _check_pair(gt, pred, void)
    if void is not None:
        keep = ~np.asarray(void).astype(bool)
        gt, pred = gt & keep, pred & keep
    radius = boundary_radius(gt.shape, bound_th)
    pred_b = seg2bmap(pred)
    gt_b = seg2bmap(gt)
    pred_dil = dilate_disk(pred_b, radius)
    gt_dil = dilate_disk(gt_b, radius)
    return f_from_counts(int(np.count_nonzero(pred_b)), int(np.count_nonzero(gt_b)),
                         int(np.count_nonzero(pred_b & gt_dil)), int(np.count_nonzero(gt_b & pred_dil)))


# --------------------------------------------------------------------------------------------------------
# Fast path: per-object geometry on crops, pairwise counts on rectangle overlaps
# --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Patch:
    """A boolean crop of a full frame: `data` covers rows y0..y0+h and columns x0..x0+w."""

    data: np.ndarray
    y0: int
    x0: int

    def count_and(self, other: "_Patch") -> int:
        """Number of pixels set in both patches (in full-frame coordinates)."""
        y0 = max(self.y0, other.y0)
        x0 = max(self.x0, other.x0)
        y1 = min(self.y0 + self.data.shape[0], other.y0 + other.data.shape[0])
        x1 = min(self.x0 + self.data.shape[1], other.x0 + other.data.shape[1])
        if y1 <= y0 or x1 <= x0:
            return 0
        a = self.data[y0 - self.y0: y1 - self.y0, x0 - self.x0: x1 - self.x0]
        b = other.data[y0 - other.y0: y1 - other.y0, x0 - other.x0: x1 - other.x0]
        return int(np.count_nonzero(a & b))


class ObjectGeometry:
    """What F needs of one object mask in one frame: its area, boundary and (lazily) dilated boundary.

    The dilation is only computed when a pair needs it (both boundaries non-empty and within the
    tolerance radius of each other), which skips most of the work for far-apart or empty pairs.
    """

    __slots__ = ("area", "n_boundary", "boundary", "radius", "frame_shape", "_dilated")

    def __init__(self, area: int, n_boundary: int, boundary: _Patch | None, radius: int,
                 frame_shape: tuple[int, int]) -> None:
        self.area = area
        self.n_boundary = n_boundary
        self.boundary = boundary
        self.radius = radius
        self.frame_shape = frame_shape
        self._dilated: _Patch | None = None

    @classmethod
    def empty(cls) -> "ObjectGeometry":
        return cls(area=0, n_boundary=0, boundary=None, radius=0, frame_shape=(0, 0))

    @classmethod
    def from_crop(cls, crop: np.ndarray, y0: int, x0: int, frame_shape: tuple[int, int],
                  radius: int) -> "ObjectGeometry":
        """Geometry of the mask `crop` located at (y0, x0) in a frame of `frame_shape`.

        The crop must contain the whole mask plus one pixel of margin on the right and bottom (or reach
        the image border there), so that `seg2bmap` on the crop equals the full-frame boundary map.
        """
        crop = np.asarray(crop, dtype=bool)
        area = int(np.count_nonzero(crop))
        bmap = seg2bmap(crop) if crop.size else np.zeros_like(crop)
        n_boundary = int(np.count_nonzero(bmap))
        if n_boundary == 0:
            return cls(area, 0, None, radius, frame_shape)
        rows = np.flatnonzero(bmap.any(axis=1))
        cols = np.flatnonzero(bmap.any(axis=0))
        by0, by1, bx0, bx1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        tight = bmap[by0:by1, bx0:bx1]
        return cls(area, n_boundary, _Patch(tight, y0 + int(by0), x0 + int(bx0)), radius, frame_shape)

    @property
    def dilated(self) -> _Patch:
        """The boundary dilated by the disk, clipped to the image (outside pixels do not exist for cv2)."""
        if self._dilated is None:
            b = self.boundary
            self._dilated = self.dilated_over(b.y0 - self.radius, b.x0 - self.radius,
                                              b.y0 + b.data.shape[0] + self.radius,
                                              b.x0 + b.data.shape[1] + self.radius)
        return self._dilated

    def dilated_over(self, y0: int, x0: int, y1: int, x1: int) -> _Patch:
        """The dilated boundary restricted to rows y0..y1 and columns x0..x1 (clipped to the image).

        Only the boundary pixels within `radius` of that window can reach it, so only they are dilated;
        the result equals the same window of the full dilation.
        """
        b, r = self.boundary, self.radius
        h, w = self.frame_shape
        y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
        # Input window: the output window grown by r, intersected with the boundary's own box.
        iy0, ix0 = max(y0 - r, b.y0), max(x0 - r, b.x0)
        iy1, ix1 = min(y1 + r, b.y0 + b.data.shape[0]), min(x1 + r, b.x0 + b.data.shape[1])
        if y1 <= y0 or x1 <= x0 or iy1 <= iy0 or ix1 <= ix0:
            return _Patch(np.zeros((0, 0), dtype=bool), y0, x0)
        dil = dilate_disk_unclipped(b.data[iy0 - b.y0: iy1 - b.y0, ix0 - b.x0: ix1 - b.x0], r)
        dy0, dx0 = iy0 - r, ix0 - r
        cy0, cx0 = max(y0, dy0), max(x0, dx0)
        cy1, cx1 = min(y1, dy0 + dil.shape[0]), min(x1, dx0 + dil.shape[1])
        return _Patch(dil[cy0 - dy0: cy1 - dy0, cx0 - dx0: cx1 - dx0], cy0, cx0)

    def within_reach(self, other: "ObjectGeometry") -> bool:
        """Whether the two boundaries' bounding boxes are at most `radius` apart on both axes.

        When they are not, no boundary pixel of one lies in the other's dilation (a cheap exact skip).
        """
        a, b, r = self.boundary, other.boundary, self.radius
        return (a.y0 - r < b.y0 + b.data.shape[0] and b.y0 < a.y0 + a.data.shape[0] + r
                and a.x0 - r < b.x0 + b.data.shape[1] and b.x0 < a.x0 + a.data.shape[1] + r)


# Labels below this get their bounding boxes from one OR-reduction of per-pixel uint32 bit masks, far
# cheaper than scipy.ndimage.find_objects; higher labels fall back to find_objects.
_BITMASK_LABELS = 32


def label_boxes(labels: np.ndarray, wanted: list[int]) -> dict[int, tuple[int, int, int, int]]:
    """Bounding box (y0, y1, x0, x1) of each label of `wanted` present in the label map."""
    labels = np.asarray(labels)
    if not wanted:
        return {}
    out: dict[int, tuple[int, int, int, int]] = {}
    if int(labels.max()) < _BITMASK_LABELS:  # every pixel's bit must fit in 32 bits
        bits = np.left_shift(np.uint32(1), labels.astype(np.uint32))
        row_bits = np.bitwise_or.reduce(bits, axis=1)
        col_bits = np.bitwise_or.reduce(bits, axis=0)
        for label in wanted:
            if label >= _BITMASK_LABELS:
                continue  # above the map's maximum: absent
            flag = np.uint32(1 << label)
            rows = np.flatnonzero(row_bits & flag)
            if rows.size:
                cols = np.flatnonzero(col_bits & flag)
                out[label] = (int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)
        return out
    from scipy import ndimage

    slices = ndimage.find_objects(labels, max_label=max(wanted))
    for label in wanted:
        slc = slices[label - 1]
        if slc is not None:
            out[label] = (slc[0].start, slc[0].stop, slc[1].start, slc[1].stop)
    return out


def label_geometries(labels: np.ndarray, wanted: list[int], radius: int) -> dict[int, ObjectGeometry]:
    """`ObjectGeometry` of each label of `wanted` present in the label map (absent labels are omitted)."""
    labels = np.asarray(labels)
    h, w = labels.shape
    out: dict[int, ObjectGeometry] = {}
    for label, (by0, by1, bx0, bx1) in label_boxes(labels, wanted).items():
        # One pixel of margin on every side keeps the boundary map of the crop exact (see from_crop).
        y0, y1 = max(by0 - 1, 0), min(by1 + 1, h)
        x0, x1 = max(bx0 - 1, 0), min(bx1 + 1, w)
        out[label] = ObjectGeometry.from_crop(labels[y0:y1, x0:x1] == label, y0, x0, (h, w), radius)
    return out


def pair_f(pred: ObjectGeometry, gt: ObjectGeometry) -> float:
    """F of one (prediction, ground truth) pair from their precomputed geometries."""
    pred_matched = gt_matched = 0
    if pred.n_boundary and gt.n_boundary and pred.within_reach(gt):
        # The GT dilation is shared by every prediction of the frame (computed once, cached); a
        # prediction's dilation is only needed over the GT boundary's box, so only that part is computed.
        pred_matched = pred.boundary.count_and(gt.dilated)
        g = gt.boundary
        gt_matched = g.count_and(pred.dilated_over(g.y0, g.x0, g.y0 + g.data.shape[0], g.x0 + g.data.shape[1]))
    return f_from_counts(pred.n_boundary, gt.n_boundary, pred_matched, gt_matched)


def joint_counts(gt_labels: np.ndarray, pred_labels: np.ndarray) -> np.ndarray:
    """256x256 table of pixel counts: entry [g, p] = number of pixels with GT label g and predicted label p."""
    key = gt_labels.astype(np.uint16) << 8
    key |= pred_labels
    return np.bincount(key.ravel(), minlength=256 * 256).reshape(256, 256)


def pairwise_jf(gt_labels: np.ndarray, n_gt: int, pred_labels: np.ndarray, *, identity: bool = False,
                bound_th: float = BOUNDARY_THRESHOLD) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray],
                                                                 np.ndarray, np.ndarray]:
    """J and F of every GT object 1..n_gt against predicted labels, for one frame.

    gt_labels / pred_labels: uint8 label maps of equal shape (0 = background; GT labels outside 1..n_gt
    and void pixels must already be 0; for a protocol with void, the prediction's void pixels too).
    identity: score predicted label p against GT object p only (semi-supervised protocol); the other
        entries of its row are NaN. Otherwise every present label is scored against every GT object.

    Returns (J, F, J_empty, F_empty): J[p] and F[p] are float arrays of length n_gt for each predicted
    label p present in the frame (only p <= n_gt in identity mode); J_empty/F_empty are the values
    against an empty prediction (what an absent or zero-padded predicted id gets).
    """
    if gt_labels.shape != pred_labels.shape:
        raise ValueError(f"label maps differ in shape: {gt_labels.shape} vs {pred_labels.shape}")
    radius = boundary_radius(gt_labels.shape, bound_th)
    counts = joint_counts(gt_labels, pred_labels)
    gt_area = counts.sum(axis=1)
    pred_area = counts.sum(axis=0)
    gt_geo = label_geometries(gt_labels, [g for g in range(1, n_gt + 1) if gt_area[g] > 0], radius)
    wanted = [p for p in range(1, 256) if pred_area[p] > 0 and (not identity or p <= n_gt)]
    pred_geo = label_geometries(pred_labels, wanted, radius)
    empty = ObjectGeometry.empty()

    j_empty = np.array([jaccard_from_counts(0, int(gt_area[g])) for g in range(1, n_gt + 1)], dtype=np.float64)
    f_empty = np.array([pair_f(empty, gt_geo.get(g, empty)) for g in range(1, n_gt + 1)], dtype=np.float64)
    j_out: dict[int, np.ndarray] = {}
    f_out: dict[int, np.ndarray] = {}
    for p in wanted:
        pg = pred_geo[p]
        j_row = np.full(n_gt, np.nan, dtype=np.float64)
        f_row = np.full(n_gt, np.nan, dtype=np.float64)
        for g in ([p] if identity else range(1, n_gt + 1)):
            inter = int(counts[g, p])
            j_row[g - 1] = jaccard_from_counts(inter, int(gt_area[g]) + int(pred_area[p]) - inter)
            f_row[g - 1] = pair_f(pg, gt_geo.get(g, empty))
        j_out[p] = j_row
        f_out[p] = f_row
    return j_out, f_out, j_empty, f_empty


def mask_geometry(mask: np.ndarray, radius: int) -> ObjectGeometry:
    """`ObjectGeometry` of one full-frame binary mask (cropped to its bounding box plus a 1-pixel margin)."""
    mask = np.asarray(mask).astype(bool)
    h, w = mask.shape
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return ObjectGeometry(0, 0, None, radius, (h, w))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, h)
    x0, x1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, w)
    return ObjectGeometry.from_crop(mask[y0:y1, x0:x1], y0, x0, (h, w), radius)


def frame_jf(gt: np.ndarray, pred: np.ndarray, bound_th: float = BOUNDARY_THRESHOLD) -> tuple[float, float]:
    """(J, F) of one frame without void: the same numbers as `region_jaccard` / `boundary_f_measure`,
    computed on crops around the two masks (fast for masks much smaller than the frame)."""
    gt = np.asarray(gt).astype(bool)
    pred = np.asarray(pred).astype(bool)
    _check_pair(gt, pred, None)
    inter = int(np.count_nonzero(gt & pred))
    union = int(np.count_nonzero(gt)) + int(np.count_nonzero(pred)) - inter
    radius = boundary_radius(gt.shape, bound_th)
    return jaccard_from_counts(inter, union), pair_f(mask_geometry(pred, radius), mask_geometry(gt, radius))


def expression_jf(gt_masks: Sequence[np.ndarray], pred_masks: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean J and mean F over the frames of one expression (`frame_jf` per frame: DAVIS measures, no
    void). `gt_masks`, `pred_masks`: per frame a bool [H, W] mask (a [T, H, W] array works too)."""
    js, fs = [], []
    for gt, pred in zip(gt_masks, pred_masks):
        j, f = frame_jf(gt, pred)
        js.append(j)
        fs.append(f)
    return float(np.mean(js)), float(np.mean(fs))
