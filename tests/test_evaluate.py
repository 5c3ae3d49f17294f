"""COCO keypoint evaluation: known answers on the real samples, pycocotools agreement, errors."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from rnnpose.cli import main
from rnnpose.evaluate import (
    METRICS,
    ap_by_crowding,
    evaluate_keypoints,
    format_table,
    max_pair_iou,
)
from rnnpose.io import DataError

FILES = ["coco-val2017-sample/test_coco.json", "ochuman-sample/test_ochuman.json"]


def gt_as_results(gt_file, shift=0.0, seed=0):
    data = json.loads(gt_file.read_text())
    rng = np.random.default_rng(seed)
    out = []
    for a in data["annotations"]:
        if a["num_keypoints"] == 0 or a.get("iscrowd", 0):
            continue
        kp = np.array(a["keypoints"], dtype=float).reshape(17, 3)
        kp[:, :2] += shift * rng.normal(size=(17, 2))
        kp[:, 2] = 1.0
        out.append({"image_id": a["image_id"], "category_id": 1,
                    "keypoints": kp.ravel().tolist(), "score": float(rng.uniform(0.5, 1))})
    return out


@pytest.mark.parametrize("name", FILES)
def test_ground_truth_scores_100(real_samples, name):
    gt = real_samples / name
    m = evaluate_keypoints(gt, gt_as_results(gt))
    assert list(m) == list(METRICS)
    for k in ("AP", "AP50", "AP75", "AR"):
        assert m[k] == pytest.approx(100.0), k


@pytest.mark.parametrize("name", FILES)
def test_shifted_predictions_match_pycocotools(real_samples, name, tmp_path):
    gt = real_samples / name
    res = gt_as_results(gt, shift=6.0 if "coco" in name else 30.0, seed=1)
    ours = evaluate_keypoints(gt, res)
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt))
        E = COCOeval(coco, coco.loadRes(res), iouType="keypoints")
        E.evaluate()
        E.accumulate()
        E.summarize()
    expect = dict(zip(["AP", "AP50", "AP75", "APM", "APL", "AR"], E.stats[:6], strict=True))
    for k, v in expect.items():
        assert ours[k] == pytest.approx(100 * v if v >= 0 else -1.0, abs=1e-9), k
    assert 0 < ours["AP"] < 100
    # the same from a results file
    f = tmp_path / "res.json"
    f.write_text(json.dumps(res))
    assert evaluate_keypoints(gt, f) == ours


def test_max_dets_limits_people(real_samples):
    gt = real_samples / FILES[0]
    res = gt_as_results(gt)
    one = evaluate_keypoints(gt, res, max_dets=1)
    assert one["AR"] < 100.0  # images with 2-5 people keep only the best-scoring one
    assert one["AP"] > 0
    assert evaluate_keypoints(gt, res, max_dets=20)["AR"] == pytest.approx(100.0)


def test_empty_results_are_zero(real_samples):
    m = evaluate_keypoints(real_samples / FILES[1], [])
    assert m == dict.fromkeys(METRICS, 0.0)


def test_result_errors(real_samples, tmp_path):
    gt = real_samples / FILES[0]
    res = gt_as_results(gt)
    bad = [dict(r) for r in res] + [dict(res[0], image_id=12345), dict(res[0], image_id=777)]
    f = tmp_path / "res.json"
    f.write_text(json.dumps(bad))
    with pytest.raises(DataError) as err:
        evaluate_keypoints(gt, f)
    msg = str(err.value)
    assert str(f) in msg and "777, 12345" in msg and "not in the ground truth" in msg
    with pytest.raises(DataError, match="missing 'score'"):
        evaluate_keypoints(gt, [{k: v for k, v in res[0].items() if k != "score"}])
    with pytest.raises(DataError, match="must hold 51 numbers, got 50"):
        evaluate_keypoints(gt, [dict(res[0], keypoints=res[0]["keypoints"][:50])])
    broken = tmp_path / "gt.json"
    data = json.loads(gt.read_text())
    del data["annotations"][2]["area"]
    broken.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotation 230195: missing key 'area'"):
        evaluate_keypoints(broken, res)


def test_crowding_buckets(real_samples):
    gt = real_samples / FILES[1]
    ious = max_pair_iou(gt)
    assert ious[1] == 0.0
    assert ious[2] == pytest.approx(0.5875, abs=1e-3) and ious[3] == pytest.approx(0.7808, abs=1e-3)
    rows = ap_by_crowding(gt, gt_as_results(gt))
    assert [r["bucket"] for r in rows] == ["<0.1", "0.1-0.5", ">=0.5"]
    assert [r["n_images"] for r in rows] == [1, 0, 2]
    assert rows[0]["AP"] == pytest.approx(100.0) and rows[2]["AP"] == pytest.approx(100.0)
    assert rows[1]["AP"] is None
    table = format_table(rows)
    assert table.splitlines()[0].split() == ["bucket", "images", *METRICS]
    assert table.splitlines()[2].split()[:3] == ["0.1-0.5", "0", "-"]


def test_cli_json_and_table(real_samples, tmp_path, capsys):
    gt = real_samples / FILES[0]
    f = tmp_path / "res.json"
    f.write_text(json.dumps(gt_as_results(gt, shift=6.0, seed=1)))
    assert main(["eval", "--gt", str(gt), "--results", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {*METRICS, "images"} and out["images"] == 4
    assert out["AP"] == pytest.approx(evaluate_keypoints(gt, f)["AP"])
    assert main(["eval", "--gt", str(gt), "--results", str(f), "--by-crowding"]) == 0
    text = capsys.readouterr().out
    assert f"{out['AP']:.1f}" in text and ">=0.5" in text
    f.write_text(json.dumps([dict(gt_as_results(gt)[0], image_id=5)]))
    assert main(["eval", "--gt", str(gt), "--results", str(f)]) == 2
    assert "not in the ground truth: 5" in capsys.readouterr().err


def test_cli_subset_scores_the_first_images_only(real_samples, tmp_path, capsys):
    """``--subset 1``: only the first image by id is scored (its results exact, the others'
    far off), also per crowding bucket."""
    gt = real_samples / FILES[1]
    exact, shifted = gt_as_results(gt), gt_as_results(gt, shift=40.0, seed=2)
    f = tmp_path / "res.json"
    f.write_text(json.dumps([r for r in exact if r["image_id"] == 1]
                            + [r for r in shifted if r["image_id"] != 1]))  # fmt: skip
    argv = ["eval", "--gt", str(gt), "--results", str(f), "--json", "--by-crowding"]
    assert main(argv) == 0
    whole = json.loads(capsys.readouterr().out)
    assert main([*argv, "--subset", "1"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (whole["images"], first["images"]) == (3, 1)
    assert first["AP"] == pytest.approx(100.0) and whole["AP"] < 60.0
    assert [r["n_images"] for r in first["by_crowding"]] == [1, 0, 0]


NON_FINITE = [("keypoints", float("nan")), ("keypoints", float("inf")), ("score", float("nan")),
              ("score", -float("inf"))]  # fmt: skip


@pytest.mark.parametrize("where,value", NON_FINITE)
def test_non_finite_keypoints_or_scores_are_refused(real_samples, tmp_path, capsys, where, value):
    gt = real_samples / FILES[0]
    res = gt_as_results(gt)
    bad = dict(res[3])
    if where == "keypoints":
        bad["keypoints"] = list(bad["keypoints"])
        bad["keypoints"][4] = value  # joint 1's y
    else:
        bad["score"] = value
    results = [*res[:3], bad, *res[4:]]
    with pytest.raises(DataError, match=rf"result #3 \(image {bad['image_id']}\): non-finite"):
        evaluate_keypoints(gt, results)
    f = tmp_path / "res.json"
    f.write_text(json.dumps(results))  # Python writes NaN / Infinity tokens
    assert main(["eval", "--gt", str(gt), "--results", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(f) in err[0] and "non-finite value" in err[0]
    assert evaluate_keypoints(gt, res)["AP"] == pytest.approx(100.0)  # the rest is fine
