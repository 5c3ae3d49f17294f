"""``rnnpose predict`` and ``rnnpose eval --run``: arbitrary images (any size, RGB or grey,
PNG/JPEG), the real COCO sample, figures per input, results that pycocotools accepts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rnnpose.cli import main
from rnnpose.config import get_profile
from rnnpose.evaluate import evaluate_keypoints
from rnnpose.predict import Predictor, collect_images, predict_run
from rnnpose.train.ae import train_ae
from rnnpose.train.rmpp import train_rmpp

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tiny_synth, tmp_path_factory):
    """A tiny AE run and a tiny RMPP run on it (one epoch each, seed 0), trained once.

    The RMPP run learns at 5x the tiny rate with at most 6 people per image, so that after its
    one epoch (4 steps) its heatmaps pass tau and it reports 6 people in every image. They are
    not the images' people (nor are the one-epoch AE's): what these tests check is the path
    from the networks to the files -- decoding, joints, original pixels, result records,
    pycocotools, the CLI. Known answers for the numbers come from :func:`_data_folder`.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    ae = train_ae("tiny", tiny_synth, root / "ae", epochs=1, quiet=True)
    prof = get_profile("tiny", rmpp_lr=5e-3, max_iterations=6)
    rmpp = train_rmpp(prof, ae, tiny_synth, root / "rmpp", quiet=True, epochs=1, T=2,
                      batch_size=4)  # fmt: skip
    torch.set_num_threads(before)
    return {"ae": ae, "rmpp": rmpp}


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory):
    """A wide RGB JPEG, a tall greyscale PNG and an RGBA PNG, with random content."""
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("odd")
    Image.fromarray(rng.integers(0, 256, (37, 91, 3), dtype=np.uint8)).save(d / "wide.jpg")
    Image.fromarray(rng.integers(0, 256, (120, 45), dtype=np.uint8), "L").save(d / "grey.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 4), dtype=np.uint8), "RGBA").save(d / "a.png")
    return d


def _check_results(results, n_images):
    """COCO result records with people in EVERY image (an empty list would check nothing)."""
    assert isinstance(results, list)
    assert {r["image_id"] for r in results} == set(range(1, n_images + 1)), "image without people"
    for r in results:
        assert set(r) == {"image_id", "category_id", "keypoints", "score"}
        assert r["category_id"] == 1 and 1 <= r["image_id"] <= n_images
        assert len(r["keypoints"]) == 51 and np.isfinite(r["keypoints"]).all()
        assert np.isfinite(r["score"]) and r["score"] > 0
        assert (np.asarray(r["keypoints"][2::3]) > 0).any()  # people without a joint are left out


def _to_original(xy_heatmap, height, width, stride=4, size=64):
    """Heatmap pixels -> original pixels by hand: heatmap x -> input x * stride; the letterbox
    scales the longer side to ``size`` and centres the image (pixel centres on integers)."""
    s = size / max(height, width)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    return (np.asarray(xy_heatmap) * stride - (size / 2 - 0.5)) / s + centre


def test_rmpp_predict_on_odd_images_writes_figures_and_results(runs, odd_images, tmp_path):
    out = tmp_path / "out"
    argv = ["predict", str(odd_images), "--run", str(runs["rmpp"]), "--out", str(out),
            "--quiet", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    names = ["a", "grey", "wide"]  # sorted file order
    for name in names:
        assert (out / f"{name}.png").stat().st_size > 1000
        assert (out / f"{name}_iterations.png").stat().st_size > 1000
        assert Image.open(out / f"{name}.png").format == "PNG"
    files = json.loads((out / "images.json").read_text())
    assert [Path(f["file_name"]).stem for f in files] == names
    assert [(f["height"], f["width"]) for f in files] == [(64, 64), (120, 45), (37, 91)]
    results = json.loads((out / "results.json").read_text())
    _check_results(results, 3)
    # people come back in the original pixels of each image: the decoded joints (heatmap
    # pixels) mapped back by hand, kept joints only, the person score unchanged
    from rnnpose.data.coco import read_image

    predictor = Predictor(runs["rmpp"])
    for f in files:
        pred = predictor.predict(read_image(Path(f["file_name"])))
        mine = [r for r in results if r["image_id"] == f["id"]]
        decoded = pred.decoded["keypoints"].numpy()
        assert len(mine) == len(decoded) == 6  # every decoded person keeps joints here
        for r, kp_hm, score in zip(mine, decoded, pred.decoded["scores"].tolist(), strict=True):
            kp = np.asarray(r["keypoints"]).reshape(17, 3)
            kept = kp_hm[:, 2] > 0
            want = _to_original(kp_hm[:, :2], f["height"], f["width"])
            np.testing.assert_allclose(kp[kept, :2], want[kept], atol=1e-3)
            np.testing.assert_allclose(kp[kept, 2], kp_hm[kept, 2], rtol=1e-6)
            assert (kp[~kept] == 0).all() and r["score"] == pytest.approx(score, rel=1e-6)


def test_greyscale_png_gives_the_same_people_as_its_rgb_copy(runs, tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, (50, 70), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "c.png")
    pred = Predictor(runs["rmpp"])
    from rnnpose.data.coco import read_image

    g, c = read_image(tmp_path / "g.png"), read_image(tmp_path / "c.png")
    assert g.shape == (50, 70, 3) and np.array_equal(g, c)
    pg, pc = pred.predict(g), pred.predict(c)
    assert len(pg.people) == len(pc.people) == 6
    for a, b in zip(pg.people, pc.people, strict=True):
        np.testing.assert_allclose(a["keypoints"], b["keypoints"])


def test_ae_method_on_an_rmpp_run_and_an_ae_run(runs, odd_images, tmp_path):
    for run, name in ((runs["rmpp"], "from_rmpp"), (runs["ae"], "from_ae")):
        out = tmp_path / name
        argv = ["predict", str(odd_images / "wide.jpg"), "--run", str(run), "--method", "ae",
                "--out", str(out), "--quiet", "--device", "cpu"]  # fmt: skip
        assert main(argv) == 0
        assert (out / "wide.png").is_file() and not (out / "wide_iterations.png").exists()
        _check_results(json.loads((out / "results.json").read_text()), 1)
    # the AE network inside the RMPP run is the AE run's: same people either way
    a = json.loads((tmp_path / "from_rmpp" / "results.json").read_text())
    b = json.loads((tmp_path / "from_ae" / "results.json").read_text())
    assert a == b


def test_ae_run_refuses_rmpp_with_one_line(runs, odd_images, tmp_path, capsys):
    argv = ["predict", str(odd_images), "--run", str(runs["ae"]), "--method", "rmpp",
            "--out", str(tmp_path / "o"), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(runs["ae"]) in err[0] and "cannot predict with 'rmpp'" in err[0]
    assert not (tmp_path / "o").exists()


def test_real_coco_images_results_are_accepted_by_pycocotools(runs, shared_data, tmp_path):
    coco_dir = shared_data / "coco-val2017-sample"
    gt_file = coco_dir / "test_coco.json"
    out = tmp_path / "coco"
    assert main(["predict", str(coco_dir), "--run", str(runs["rmpp"]), "--out", str(out),
                 "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    images = collect_images([coco_dir])
    assert len(images) == 4
    for p in images:
        assert (out / f"{p.stem}.png").is_file() and (out / f"{p.stem}_iterations.png").is_file()
    # predict numbers its inputs 1..n (images.json); map them to the COCO ids by file name
    gt = json.loads(gt_file.read_text())
    by_name = {im["file_name"]: im["id"] for im in gt["images"]}
    files = {f["id"]: by_name[Path(f["file_name"]).name]
             for f in json.loads((out / "images.json").read_text())}  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    _check_results(results, 4)
    assert len(results) == 4 * 6
    for r in results:
        r["image_id"] = files[r["image_id"]]
    metrics = evaluate_keypoints(gt_file, results)
    assert set(metrics) >= {"AP", "AP50", "AP75", "APM", "APL", "AR"}
    assert all(0.0 <= metrics[k] <= 100.0 for k in ("AP", "AR"))  # poor, but valid
    # pycocotools did look at them: the same people as the ground truth score 100
    gt = json.loads(gt_file.read_text())
    own = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
            "score": 1.0} for a in gt["annotations"] if a["num_keypoints"] > 0]  # fmt: skip
    assert evaluate_keypoints(gt_file, results + own)["AR"] == pytest.approx(100.0)


def _data_folder(source: Path, out: Path, results=None, n: int = 6) -> Path:
    """A data folder of the first ``n`` images of ``source``; with ``results`` (COCO records on
    those images) its ground truth is those people instead: every kept joint labelled
    (v = 2), bbox and area from the kept joints. The run that predicted them must score 100."""
    doc = json.loads((source / "annotations.json").read_text())
    images = sorted(doc["images"], key=lambda im: im["id"])[:n]
    ids = {im["id"] for im in images}
    anns = [a for a in doc["annotations"] if a["image_id"] in ids]
    if results is not None:
        anns = []
        for k, r in enumerate(results):
            kp = np.asarray(r["keypoints"], dtype=float).reshape(17, 3)
            kept = kp[:, 2] > 0
            kp[kept, 2], kp[~kept] = 2, 0
            x0, y0 = kp[kept, :2].min(0)
            w, h = np.maximum(kp[kept, :2].max(0) - [x0, y0], 1.0)
            anns.append({"id": k + 1, "image_id": r["image_id"], "category_id": 1, "iscrowd": 0,
                         "keypoints": kp.ravel().tolist(), "num_keypoints": int(kept.sum()),
                         "bbox": [float(x0), float(y0), float(w), float(h)],
                         "area": float(w * h)})  # fmt: skip
    out.mkdir()
    (out / "annotations.json").write_text(json.dumps({**doc, "images": images,
                                                      "annotations": anns}))  # fmt: skip
    (out / "images").symlink_to((source / "images").resolve())
    return out


def _eval_json(capsys, *argv) -> dict:
    assert main(["eval", *map(str, argv), "--device", "cpu", "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_eval_run_prints_the_ap_table(runs, tiny_synth, tmp_path, capsys):
    """Known answers: against ground truth made of a run's own people, that run scores 100."""
    six = _data_folder(tiny_synth, tmp_path / "six")
    _, rmpp_results = predict_run(runs["rmpp"], six, quiet=True)
    _, ae_results = predict_run(runs["ae"], six, quiet=True)
    assert len(rmpp_results) == 6 * 6 and {r["image_id"] for r in ae_results} == {
        r["image_id"] for r in rmpp_results}  # fmt: skip
    rmpp_data = _data_folder(tiny_synth, tmp_path / "rmpp_people", rmpp_results)
    ae_data = _data_folder(tiny_synth, tmp_path / "ae_people", ae_results)
    assert main(["eval", "--run", str(runs["rmpp"]), "--data", str(rmpp_data),
                 "--quiet"]) == 0  # fmt: skip
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["AP", "AP50", "AP75", "APM", "APL", "AR"]
    assert [table[2].split()[k] for k in (0, 1, 2, 5)] == ["100.0"] * 4
    ae_on_ae = _eval_json(capsys, "--run", runs["ae"], "--data", ae_data)
    assert ae_on_ae["AP"] == pytest.approx(100.0) and ae_on_ae["AR"] == pytest.approx(100.0)
    # --method ae on the RMPP run evaluates its AE network's grouping: the AE run's numbers ...
    ae_via_rmpp = _eval_json(capsys, "--run", runs["rmpp"], "--data", ae_data, "--method", "ae")
    assert ae_via_rmpp == pytest.approx(ae_on_ae)
    # ... while the RMPP method on the AE's people is scored as itself, far below
    rmpp_on_ae = _eval_json(capsys, "--run", runs["rmpp"], "--data", ae_data)
    assert rmpp_on_ae["AP"] < 50.0
    want = evaluate_keypoints(ae_data / "annotations.json", rmpp_results)
    assert rmpp_on_ae == pytest.approx(want)


@pytest.mark.parametrize("argv", [
    ["synth", "--out", "x"], ["train", "ae", "--out", "x"], ["train", "rmpp", "--ae", "a",
    "--out", "x"], ["eval", "--run", "r", "--data", "d"], ["predict", "i", "--run", "r",
    "--out", "o"],
])  # fmt: skip
def test_every_long_subcommand_takes_quiet(argv):
    from rnnpose.cli import build_parser

    assert build_parser().parse_args([*argv, "--quiet"]).quiet is True


def test_progress_is_silent_off_a_terminal_or_with_quiet(monkeypatch):
    import io

    from rnnpose.train.common import progress

    monkeypatch.delenv("RNNPOSE_QUIET", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    assert progress(range(3)).disable
    tty = io.StringIO()
    tty.isatty = lambda: True
    monkeypatch.setattr("sys.stderr", tty)
    assert not progress(range(3), file=tty).disable
    assert progress(range(3), quiet=True).disable
