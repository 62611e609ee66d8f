"""DAVIS evaluator: statistics, both protocols against a literal port of the official pipeline (with void
pixels, which the shared fixture does not have), Ref-DAVIS averaging and bad input."""
import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from vdit.errors import DataError, EvaluationError
from vdit.evaluation import davis
from vdit.evaluation.davis import evaluate_davis, evaluate_ref_davis, object_statistics
from vdit.evaluation.jf import boundary_f_measure, region_jaccard

SHAPE = (40, 64)


# ----------------------------------------------------------------------------------------- statistics
def test_statistics_hand_example():
    v = np.array([1.0, 0.8, 0.6, 0.4, 0.2, 0.0, np.nan, 0.9])
    mean, recall, decay = object_statistics(v)
    assert mean == pytest.approx(np.nanmean(v))
    # v > 0.5 is False for NaN and counts in the denominator (nanmean of a bool array)
    assert recall == pytest.approx(4 / 8)
    # N = 8: linspace(1, 8, 5) = [1, 2.75, 4.5, 6.25, 8]; the +1e-10 rounds 4.5 up, so the edges are
    # [0, 2, 4, 5, 7]: first bin v[0:3], last bin v[5:8] = [0.0, nan, 0.9] (NaN ignored)
    assert davis.decay_bin_edges(8) == [0, 2, 4, 5, 7]
    assert decay == pytest.approx(np.mean([1.0, 0.8, 0.6]) - 0.45)


def test_decay_uint8_quirk():
    assert davis.decay_bin_edges(300) == [0, 75, 150, 224, 43]  # 299 wraps to 43
    v = np.linspace(1.0, 0.0, 300)
    _, _, decay = object_statistics(v)
    # last bin v[224:44] is empty -> NaN, exactly as the official np.uint8 indices give
    assert np.isnan(decay)
    assert np.isnan(object_statistics(np.ones(256))[2])  # edge 255 + 1 wraps to 0
    assert object_statistics(np.ones(255))[2] == 0.0


# ------------------------------------------------------------------------ literal port of the official
def official_port(gt_frames, res_frames, task):
    """davis2017-evaluation's per-sequence computation, written the straightforward way (float volumes,
    one full-frame J and F per pair and frame), using the reference per-frame functions."""
    masks = np.stack(gt_frames).astype(np.float64)
    void = masks == 255
    masks[void] = 0
    n_gt = int(masks[0].max())
    gt = np.stack([masks == k for k in range(1, n_gt + 1)])
    res = np.stack(res_frames).astype(np.float64)
    if task == "semi-supervised":
        gt, res, void_used = gt[:, 1:-1], res[1:-1], None
    else:
        void_used = void
    n_res = int(res.max())
    pred = [res == k for k in range(1, n_res + 1)]
    while len(pred) < n_gt:
        pred.append(np.zeros_like(res, dtype=bool))
    n_t = gt.shape[1]

    def jf_pair(i, j):
        vs = [None] * n_t if void_used is None else list(void_used)
        js = [region_jaccard(gt[i, t], pred[j][t], vs[t]) for t in range(n_t)]
        fs = [boundary_f_measure(gt[i, t], pred[j][t], vs[t]) for t in range(n_t)]
        return np.array(js), np.array(fs)

    if task == "semi-supervised":
        pairs = [jf_pair(i, i) for i in range(n_gt)]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    j_all = np.zeros((len(pred), n_gt, n_t))
    f_all = np.zeros_like(j_all)
    for i in range(n_gt):
        for j in range(len(pred)):
            j_all[j, i], f_all[j, i] = jf_pair(i, j)
    rows, cols = linear_sum_assignment(-(j_all.mean(axis=2) + f_all.mean(axis=2)) / 2)
    return list(j_all[rows, cols]), list(f_all[rows, cols])


def synthetic_case(davis_tools, tmp_path, task, seed=0):
    rng = np.random.default_rng(seed)
    gt = {"seq-a": davis_tools.blob_sequence(rng, 7, SHAPE, 3, void=True),
          "seq-b": davis_tools.blob_sequence(rng, 5, SHAPE, 2, void=True)}
    # a GT object missing from the first frame's max is not an object; later ids above it are ignored
    gt["seq-b"][3][0:4, 0:4] = 7
    res = {"seq-a": davis_tools.blob_sequence(rng, 7, SHAPE, 3 if task == "semi-supervised" else 5),
           "seq-b": davis_tools.blob_sequence(rng, 5, SHAPE, 1)}  # fewer ids than objects: zero-padding
    # predictions partly on void pixels and on the true objects
    for seq in gt:
        for t, frame in enumerate(res[seq]):
            frame[(gt[seq][t] == 1) & (rng.random(SHAPE) > 0.3)] = 1
    root = davis_tools.make_davis(tmp_path / "DAVIS", task, gt)
    results = davis_tools.write_results(tmp_path / "res", res)
    return gt, res, root, results


@pytest.mark.parametrize("task", ["unsupervised", "semi-supervised"])
def test_protocols_match_literal_port(davis_tools, tmp_path, task):
    gt, res, root, results = synthetic_case(davis_tools, tmp_path, task)
    got = evaluate_davis(root, results, task=task)
    stats = {"J": [], "F": []}
    for seq in gt:
        js, fs = official_port(gt[seq], res[seq], task)
        for k, (j, f) in enumerate(zip(js, fs)):
            assert got.per_object[f"{seq}_{k + 1}"]["J"] == pytest.approx(np.nanmean(j), abs=1e-12)
            assert got.per_object[f"{seq}_{k + 1}"]["F"] == pytest.approx(np.nanmean(f), abs=1e-12)
            stats["J"].append(object_statistics(j))
            stats["F"].append(object_statistics(f))
    for m in ("J", "F"):
        for idx, name in enumerate(("Mean", "Recall", "Decay")):
            assert got.summary[f"{m}-{name}"] == pytest.approx(np.mean([s[idx] for s in stats[m]]), abs=1e-12)
    assert got.summary["J&F-Mean"] == pytest.approx((got.summary["J-Mean"] + got.summary["F-Mean"]) / 2)


def test_void_only_counts_in_unsupervised(davis_tools, tmp_path):
    frame = np.zeros(SHAPE, np.uint8)
    frame[5:20, 5:20] = 1
    frame[25:30, :] = 255
    pred = np.zeros(SHAPE, np.uint8)
    pred[5:20, 5:20] = 1
    pred[25:30, :] = 1  # prediction covering exactly the void band
    gt = {"s": [frame] * 3}
    for task, want_j in (("unsupervised", 1.0), ("semi-supervised", 225 / (225 + 5 * 64))):
        root = davis_tools.make_davis(tmp_path / task, task, gt)
        results = davis_tools.write_results(tmp_path / f"res-{task}", {"s": [pred] * 3})
        got = evaluate_davis(root, results, task=task)
        assert got.per_object["s_1"]["J"] == pytest.approx(want_j)


def test_unsupervised_matching_and_names(davis_tools, tmp_path):
    # GT objects 1, 2; predictions: id 2 = GT object 1, id 1 = GT object 2 (swapped), id 3 junk.
    gt_f = np.zeros(SHAPE, np.uint8)
    gt_f[2:12, 2:12] = 1
    gt_f[20:35, 30:60] = 2
    pred = np.zeros(SHAPE, np.uint8)
    pred[2:12, 2:12] = 2
    pred[20:35, 30:60] = 1
    pred[0:2, 50:60] = 3
    root = davis_tools.make_davis(tmp_path / "D", "unsupervised", {"s": [gt_f] * 4})
    results = davis_tools.write_results(tmp_path / "r", {"s": [pred] * 4})
    got = evaluate_davis(root, results, task="unsupervised")
    assert got.per_object == {"s_1": {"J": 1.0, "F": 1.0}, "s_2": {"J": 1.0, "F": 1.0}}
    assert got.summary["J&F-Mean"] == 1.0 and got.summary["J-Decay"] == 0.0


def test_semi_supervised_drops_first_and_last_frame(davis_tools, tmp_path):
    gt_f = np.zeros(SHAPE, np.uint8)
    gt_f[2:12, 2:12] = 1
    frames = [gt_f] * 4
    root = davis_tools.make_davis(tmp_path / "D", "semi-supervised", {"s": frames})
    empty = np.zeros(SHAPE, np.uint8)
    # only frames 1 and 2 are read: 0 and 3 may be absent, their content is irrelevant
    results = davis_tools.write_results(tmp_path / "r", {"s": [None, gt_f, empty, None]})
    got = evaluate_davis(root, results, task="semi-supervised")
    assert got.per_object["s_1"]["J"] == 0.5 and got.per_object["s_1"]["F"] == 0.5


# ---------------------------------------------------------------------------------------- Ref-DAVIS
def test_ref_davis_averages_four_sets(davis_tools, tmp_path):
    rng = np.random.default_rng(5)
    gt = {"s": davis_tools.blob_sequence(rng, 4, SHAPE, 2)}
    root = davis_tools.make_davis(tmp_path / "D", "unsupervised", gt)
    singles = []
    for a in range(4):
        res = {"s": davis_tools.blob_sequence(np.random.default_rng(a), 4, SHAPE, 2)}
        folder = davis_tools.write_results(tmp_path / "out" / f"anno_{a}", res)
        singles.append(evaluate_davis(root, folder, task="unsupervised").summary)
    got = evaluate_ref_davis(root, tmp_path / "out")
    for key in davis.SUMMARY_KEYS:
        assert got.mean[key] == pytest.approx(np.mean([s[key] for s in singles]), abs=1e-15)
    assert len({round(s["J&F-Mean"], 9) for s in singles}) > 1  # the sets really differ
    assert got.to_json_dict()["anno_2"]["J-Mean"] == singles[2]["J-Mean"]


def test_ref_davis_missing_set(davis_tools, tmp_path):
    rng = np.random.default_rng(1)
    gt = {"s": davis_tools.blob_sequence(rng, 3, SHAPE, 1)}
    root = davis_tools.make_davis(tmp_path / "D", "unsupervised", gt)
    for a in range(3):
        davis_tools.write_results(tmp_path / "out" / f"anno_{a}", gt)
    with pytest.raises(EvaluationError, match="anno_3"):
        evaluate_ref_davis(root, tmp_path / "out")


# ---------------------------------------------------------------------------------------- bad input
@pytest.fixture
def small_case(davis_tools, tmp_path):
    rng = np.random.default_rng(2)
    gt = {"s": davis_tools.blob_sequence(rng, 4, SHAPE, 2)}
    return gt, davis_tools, tmp_path


@pytest.mark.parametrize("task", ["unsupervised", "semi-supervised"])
def test_missing_result_frame(small_case, task):
    gt, tools, tmp = small_case
    root = tools.make_davis(tmp / "D", task, gt)
    results = tools.write_results(tmp / "r", {"s": [gt["s"][0], gt["s"][1], None, gt["s"][3]]})
    with pytest.raises(EvaluationError, match=r"00002\.png"):
        evaluate_davis(root, results, task=task)


def test_semi_supervised_unknown_object_id(small_case):
    gt, tools, tmp = small_case
    root = tools.make_davis(tmp / "D", "semi-supervised", gt)
    bad = [f.copy() for f in gt["s"]]
    bad[2][0, 0] = 3  # GT has 2 objects
    results = tools.write_results(tmp / "r", {"s": bad})
    with pytest.raises(EvaluationError, match=r"00002\.png.*id 3"):
        evaluate_davis(root, results, task="semi-supervised")


def test_unsupervised_too_many_proposals(small_case):
    gt, tools, tmp = small_case
    root = tools.make_davis(tmp / "D", "unsupervised", gt)
    bad = [f.copy() for f in gt["s"]]
    bad[1][0, 0] = 21
    results = tools.write_results(tmp / "r", {"s": bad})
    with pytest.raises(EvaluationError, match=r"00001\.png.*21.*20"):
        evaluate_davis(root, results, task="unsupervised")
    bad[1][0, 0] = 20  # 20 proposals are allowed
    results = tools.write_results(tmp / "r2", {"s": bad})
    assert evaluate_davis(root, results, task="unsupervised").per_object


def test_wrong_size_result(small_case):
    gt, tools, tmp = small_case
    root = tools.make_davis(tmp / "D", "unsupervised", gt)
    frames = list(gt["s"])
    frames[3] = np.zeros((SHAPE[0] + 1, SHAPE[1]), np.uint8)
    results = tools.write_results(tmp / "r", {"s": frames})
    with pytest.raises(EvaluationError, match=r"00003\.png.*64x41"):
        evaluate_davis(root, results, task="unsupervised")


def test_rgb_result_rejected_grey_accepted(small_case):
    gt, tools, tmp = small_case
    root = tools.make_davis(tmp / "D", "unsupervised", gt)
    results = tools.write_results(tmp / "rgb", gt, mode="RGB")
    with pytest.raises(EvaluationError, match=r"00000\.png.*'RGB'"):
        evaluate_davis(root, results, task="unsupervised")
    grey = evaluate_davis(root, tools.write_results(tmp / "grey", gt, mode="L"), task="unsupervised")
    palette = evaluate_davis(root, tools.write_results(tmp / "pal", gt, mode="P"), task="unsupervised")
    assert grey.summary == palette.summary and grey.summary["J-Mean"] == 1.0


def test_corrupt_result_png(small_case):
    gt, tools, tmp = small_case
    root = tools.make_davis(tmp / "D", "unsupervised", gt)
    results = tools.write_results(tmp / "r", gt)
    (results / "s" / "00001.png").write_bytes(b"not a png")
    with pytest.raises(EvaluationError, match=r"00001\.png"):
        evaluate_davis(root, results, task="unsupervised")


def test_empty_sequence_lists(small_case):
    gt, tools, tmp = small_case
    root = tools.make_davis(tmp / "D", "unsupervised", gt)
    results = tools.write_results(tmp / "r", gt)
    with pytest.raises(EvaluationError, match="empty sequence list"):
        evaluate_davis(root, results, sequences=[])
    (root / "ImageSets" / "2017" / "val.txt").write_text("\n\n")
    with pytest.raises(DataError, match=r"val\.txt is empty"):
        evaluate_davis(root, results)


def test_missing_sequence_and_folders(small_case):
    gt, tools, tmp = small_case
    root = tools.make_davis(tmp / "D", "unsupervised", gt)
    results = tools.write_results(tmp / "r", gt)
    with pytest.raises(DataError, match="no JPEG frames for sequence 'nope'"):
        evaluate_davis(root, results, sequences=["nope"])
    with pytest.raises(EvaluationError, match="results folder not found"):
        evaluate_davis(root, tmp / "absent")
    with pytest.raises(DataError, match="Annotations"):
        evaluate_davis(root, results, task="semi-supervised")  # this root has only the unsupervised GT
    with pytest.raises(EvaluationError, match="unknown DAVIS task"):
        evaluate_davis(root, results, task="zero-shot")
    other = tools.write_results(tmp / "r2", {"t": gt["s"]})
    with pytest.raises(EvaluationError, match="no results for sequence 's'"):
        evaluate_davis(root, other)
