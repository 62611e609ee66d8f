"""Per-frame J and F primitives against hand-worked cases and brute-force references."""
import numpy as np
import pytest
from scipy import ndimage

from vdit.evaluation import jf


def test_disk_matches_skimage_definition():
    # skimage.morphology.disk(1) and disk(2) as printed in its documentation.
    assert jf.disk_footprint(1).astype(int).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert jf.disk_footprint(2).astype(int).tolist() == [
        [0, 0, 1, 0, 0], [0, 1, 1, 1, 0], [1, 1, 1, 1, 1], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]]
    for r in range(0, 13):
        d = jf.disk_footprint(r)
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        assert d.shape == (2 * r + 1, 2 * r + 1)
        assert (d == (xx**2 + yy**2 <= r * r)).all()
        # the chord half-widths describe the same set, row by row
        assert [int(d[r + dy].sum()) for dy in range(r + 1)] == [2 * k + 1 for k in jf.disk_half_widths(r)]


@pytest.mark.parametrize("shape,radius", [((480, 854), 8), ((480, 1152), 10), ((1080, 1920), 18), ((10, 10), 1)])
def test_boundary_radius(shape, radius):
    assert jf.boundary_radius(shape) == radius


def test_boundary_radius_pixels_when_threshold_ge_1():
    assert jf.boundary_radius((480, 854), 3) == 3
    with pytest.raises(ValueError):
        jf.boundary_radius((480, 854), 2.5)


@pytest.mark.parametrize("radius", [0, 1, 2, 3, 5, 8, 10])
def test_dilation_equals_bruteforce_disk(radius):
    rng = np.random.default_rng(radius)
    for _ in range(5):
        b = rng.random((37, 53)) > 0.985
        b[0, 0] = b[-1, -1] = b[5, -1] = True  # border pixels: nothing may leak or wrap
        want = ndimage.binary_dilation(b, structure=jf.disk_footprint(radius), border_value=0) if radius else b
        assert (jf.dilate_disk(b, radius) == want).all()


def test_seg2bmap_hand_example():
    seg = np.zeros((4, 5), bool)
    seg[1:3, 1:3] = True
    # a pixel is on the boundary when it differs from its right, lower or lower-right neighbour
    want = np.array([[1, 1, 1, 0, 0],
                     [1, 0, 1, 0, 0],
                     [1, 1, 1, 0, 0],
                     [0, 0, 0, 0, 0]], bool)
    assert (jf.seg2bmap(seg) == want).all()


def test_seg2bmap_last_row_and_column_rules():
    full = np.ones((3, 4), bool)
    assert not jf.seg2bmap(full).any()  # a mask covering the frame has no boundary
    seg = np.zeros((3, 4), bool)
    seg[2, 1:3] = True  # last row: compared with the right neighbour only (not with a zero row below)
    b = jf.seg2bmap(seg)
    assert b[2].tolist() == [True, False, True, False]
    assert b[1].tolist() == [True, True, True, False]  # they see the mask below / diagonally
    seg = np.zeros((3, 4), bool)
    seg[-1, -1] = True
    b = jf.seg2bmap(seg)
    assert not b[-1, -1]  # the bottom-right pixel is never a boundary pixel
    assert b[1, 2] and b[1, 3] and b[2, 2]


def test_jaccard_cases():
    a = np.zeros((6, 6), bool)
    assert jf.region_jaccard(a, a) == 1.0  # empty union
    g = a.copy(); g[0:2, 0:2] = True  # 4 px
    p = a.copy(); p[1:3, 0:2] = True  # 4 px, 2 shared
    assert jf.region_jaccard(g, p) == pytest.approx(2 / 6)
    void = a.copy(); void[2, :] = True  # removes 2 predicted pixels from the union
    assert jf.region_jaccard(g, p, void) == pytest.approx(2 / 4)


def test_f_edge_cases():
    assert jf.f_from_counts(0, 0, 0, 0) == 1.0
    assert jf.f_from_counts(0, 5, 0, 0) == 0.0  # P = 1, R = 0
    assert jf.f_from_counts(5, 0, 0, 0) == 0.0  # P = 0, R = 1
    assert jf.f_from_counts(4, 8, 0, 0) == 0.0  # P + R = 0
    assert jf.f_from_counts(4, 8, 2, 4) == pytest.approx(2 * 0.5 * 0.5 / 1.0)
    assert jf.f_from_counts(10, 20, 10, 5) == pytest.approx(2 * 1.0 * 0.25 / 1.25)


def test_f_measure_hand_example():
    # Two 1-px-apart squares: every boundary pixel is within the tolerance -> F = 1; far apart -> 0.
    g = np.zeros((60, 60), bool); g[10:20, 10:20] = True
    p = np.zeros((60, 60), bool); p[11:21, 10:20] = True
    assert jf.boundary_f_measure(g, p) == 1.0
    p2 = np.zeros((60, 60), bool); p2[40:50, 40:50] = True
    assert jf.boundary_f_measure(g, p2) == 0.0
    assert jf.boundary_f_measure(g, np.zeros_like(g)) == 0.0
    assert jf.boundary_f_measure(np.zeros_like(g), np.zeros_like(g)) == 1.0


def _random_masks(rng, h, w):
    g = ndimage.binary_opening(rng.random((h, w)) > rng.uniform(0.2, 0.8))
    p = ndimage.binary_dilation(g, iterations=int(rng.integers(0, 3))) ^ (rng.random((h, w)) > 0.97)
    return g, p


def test_fast_pair_equals_simple_functions():
    rng = np.random.default_rng(7)
    for it in range(60):
        h, w = (int(x) for x in rng.integers(3, 70, 2))
        g, p = _random_masks(rng, h, w)
        if it % 9 == 0:
            p[:] = False
        if it % 13 == 0:
            g[:] = True
        want = (jf.region_jaccard(g, p), jf.boundary_f_measure(g, p, bound_th=0.06))
        assert jf.frame_jf(g, p, bound_th=0.06) == want


def test_pairwise_jf_equals_per_pair_reference():
    rng = np.random.default_rng(3)
    h, w = 64, 90
    for _ in range(10):
        gt = rng.integers(0, 4, (h, w)).astype(np.uint8)
        gt = ndimage.median_filter(gt, size=7)
        pred = ndimage.median_filter(rng.integers(0, 6, (h, w)).astype(np.uint8), size=9)
        n_gt = 3
        j_rows, f_rows, j_empty, f_empty = jf.pairwise_jf(gt, n_gt, pred, bound_th=0.05)
        for p in range(1, 6):
            for g in range(1, n_gt + 1):
                want_j = jf.region_jaccard(gt == g, pred == p)
                want_f = jf.boundary_f_measure(gt == g, pred == p, bound_th=0.05)
                if p in j_rows:
                    assert j_rows[p][g - 1] == want_j and f_rows[p][g - 1] == want_f
                else:  # absent label: the empty-prediction values
                    assert j_empty[g - 1] == want_j and f_empty[g - 1] == want_f
        ident_j, ident_f, _, _ = jf.pairwise_jf(gt, n_gt, pred, identity=True, bound_th=0.05)
        for p, row in ident_j.items():
            assert p <= n_gt
            assert row[p - 1] == j_rows[p][p - 1] and ident_f[p][p - 1] == f_rows[p][p - 1]
            assert np.isnan(np.delete(row, p - 1)).all()


def test_label_boxes_bitmask_and_fallback_agree_with_find_objects():
    rng = np.random.default_rng(11)
    for top in (5, 31, 40, 255):
        labels = np.zeros((50, 70), np.uint8)
        for k in rng.choice(np.arange(1, top + 1), size=min(top, 12), replace=False):
            y, x = rng.integers(0, 45), rng.integers(0, 65)
            labels[y: y + rng.integers(1, 6), x: x + rng.integers(1, 6)] = k
        labels[49, 69] = top
        present = sorted(int(v) for v in np.unique(labels) if v)
        slices = ndimage.find_objects(labels)
        want = {k: (slices[k - 1][0].start, slices[k - 1][0].stop, slices[k - 1][1].start, slices[k - 1][1].stop)
                for k in present}
        assert jf.label_boxes(labels, present + [top + 1] if top < 255 else present) == want
