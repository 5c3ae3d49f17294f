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
from rnnpose.predict import Predictor, coco_results, collect_images, predict_run
from rnnpose.train.ae import train_ae
from rnnpose.train.rmpp import train_rmpp

# one xdist worker holds the module (``--dist loadgroup``): its module fixtures train once
pytestmark = pytest.mark.xdist_group("predict")


@pytest.fixture(scope="module")
def runs(tiny_synth, tmp_path_factory):
    """A tiny AE run and a tiny RMPP run on it (one epoch each, seed 0), trained once.

    The RMPP run learns at 5x the tiny rate with at most 6 people per image, so that after its
    one epoch (4 steps) its heatmaps pass tau and it reports 6 people in every image. They are
    not the images' people (nor are the one-epoch AE's): what these tests check is the path
    from the networks to the files -- decoding, joints, original pixels, result records,
    pycocotools, the CLI. Known answers for the numbers come from :func:`_data_folder`.
    """
    root = tmp_path_factory.mktemp("runs")
    ae = train_ae("tiny", tiny_synth, root / "ae", epochs=1, quiet=True)
    prof = get_profile("tiny", rmpp_lr=5e-3, max_iterations=6)
    rmpp = train_rmpp(prof, ae, tiny_synth, root / "rmpp", quiet=True, epochs=1, T=2,
                      batch_size=4)  # fmt: skip
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


def test_real_coco_images_results_are_accepted_by_pycocotools(runs, real_samples, tmp_path):
    coco_dir = real_samples / "coco-val2017-sample"
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
    assert rmpp_on_ae == pytest.approx({**want, "images": 6})


@pytest.mark.parametrize("argv", [
    ["synth", "--out", "{tmp}/x"], ["train", "ae", "--out", "{tmp}/x"], ["train", "rmpp", "--ae",
    "{ae}", "--out", "{tmp}/x"], ["eval", "--run", "{ae}", "--data", "{data}"], ["predict", "i",
    "--run", "{ae}", "--out", "{tmp}/o"],
])  # fmt: skip
def test_every_long_subcommand_takes_quiet(argv, runs, tiny_synth, tmp_path):
    from rnnpose.cli import build_parser

    argv = [a.format(tmp=tmp_path, ae=runs["ae"], data=tiny_synth) for a in argv]
    assert build_parser().parse_args([*argv, "--quiet"]).quiet is True


def test_progress_is_silent_off_a_terminal_or_with_quiet(monkeypatch):
    import io

    from rnnpose.progress import progress

    monkeypatch.delenv("RNNPOSE_QUIET", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    assert progress(range(3)).disable
    tty = io.StringIO()
    tty.isatty = lambda: True
    monkeypatch.setattr("sys.stderr", tty)
    assert not progress(range(3), file=tty).disable
    assert progress(range(3), quiet=True).disable


def _image(seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (70, 90, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def low_tau_run(runs, tmp_path_factory):
    """The tiny RMPP run with tau set halfway between two middle joint maxima of its strongest
    person on ``_image()``, so that person keeps about half of its joints and drops the rest,
    which multi-scale then fills."""
    import shutil

    run = tmp_path_factory.mktemp("low_tau") / "rmpp"
    shutil.copytree(runs["rmpp"], run)
    config = json.loads((run / "config.json").read_text())
    maxima = Predictor(run).predict(_image()).decoded["heatmaps"].amax((2, 3))
    # the strongest person's joint maxima, sorted: halfway between two middle ones, that
    # person keeps some joints and drops others (a person with none kept is not refined)
    values = maxima[maxima.amax(1).argmax()].unique()
    assert len(values) > 1, "every joint maximum equal: no tau keeps some and drops others"
    k = len(values) // 2
    config["profile"]["tau"] = float(values[k - 1] + values[k]) / 2
    (run / "config.json").write_text(json.dumps(config))
    return run


def test_rmpp_multi_scale_decodes_at_scale_1_and_fills_only_missing_joints(low_tau_run):
    """The paper's multi-scale RMPP (section 3.3): the decoder's people are those of the
    single-scale pass; flip and scale 1.5 only fill the joints it dropped, by AE's refinement
    on the averaged maps (each filled joint is the argmax of heatmap - round(tag distance to
    the person's mean tag), checked here by brute force)."""
    pred = Predictor(low_tau_run)
    image = _image()
    multi = pred.predict(image, flip=True, scales=(1.5, 1.0))  # scale 1 goes first for RMPP
    # the features come from the unflipped scale-1 view (a batch of two views with flip, so
    # equal to the plain pass up to rounding; bit for bit to the unrefined flip pass)
    single = pred.predict(image, flip=True, refine=False)
    plain = pred.predict(image)
    for key in ("heatmaps", "p", "scores"):
        assert torch.equal(single.decoded[key], multi.decoded[key])
    for key in ("heatmaps", "p"):
        torch.testing.assert_close(plain.decoded[key], multi.decoded[key], atol=1e-5, rtol=0)
    assert "filled" not in single.decoded and "filled" not in plain.decoded
    before, after = single.decoded["keypoints"], multi.decoded["keypoints"]
    kept = before[..., 2] > 0
    assert torch.equal(after[kept], before[kept])
    filled = multi.decoded["filled"]
    assert torch.equal(filled, ~kept & (after[..., 2] > 0))
    assert filled.any() and (~kept).any()
    heat, tags = multi.maps.heatmaps, multi.maps.tags  # [17,M,M], [17,M,M,2] (flip: 2 tags)
    assert tags.shape[-1] == 2 and np.array_equal(multi.maps.features, single.maps.features)
    for z, j in zip(*np.nonzero(filled.numpy()), strict=True):
        found = np.nonzero(kept[z].numpy())[0]
        xy = np.rint(before[z, found, :2].numpy()).astype(int)
        mean = tags[found, xy[:, 1], xy[:, 0]].mean(axis=0)
        score = heat[j] - np.round(np.sqrt(((tags[j] - mean) ** 2).sum(-1)))
        y, x = np.unravel_index(np.argmax(score), score.shape)
        assert abs(after[z, j, 0] - x) == 0.25 and abs(after[z, j, 1] - y) == 0.25
        assert after[z, j, 2] == pytest.approx(heat[j, y, x])
    # in original pixels: the same people, with the filled joints now written out
    assert len(single.people) == len(multi.people)
    for a, b in zip(single.people, multi.people, strict=True):
        assert a["score"] == b["score"]
        np.testing.assert_array_equal(a["keypoints"][a["keypoints"][:, 2] > 0],
                                      b["keypoints"][a["keypoints"][:, 2] > 0])  # fmt: skip
    # at scale 1 without flip the refinement is off unless asked for; asked for, it only adds
    before = plain.decoded["keypoints"]
    kept = before[..., 2] > 0
    forced = pred.predict(image, refine=True).decoded
    assert torch.equal(forced["keypoints"][kept], before[kept]) and forced["filled"].any()


def test_eval_run_takes_flip_and_scales(low_tau_run, tiny_synth, tmp_path, capsys, monkeypatch):
    data = tmp_path / "four"  # the first 4 images of the tiny set (cheap)
    ann = json.loads((tiny_synth / "annotations.json").read_text())
    ann["images"] = ann["images"][:4]
    ann["annotations"] = [a for a in ann["annotations"] if a["image_id"] <= 4]
    (data / "images").mkdir(parents=True)
    (data / "annotations.json").write_text(json.dumps(ann))
    for im in ann["images"]:
        (data / "images" / im["file_name"]).symlink_to(tiny_synth / "images" / im["file_name"])
    argv = ["eval", "--run", str(low_tau_run), "--data", str(data), "--flip",
            "--scales", "1", "1.5", "--json", "--quiet", "--device", "cpu"]  # fmt: skip
    import rnnpose.predict

    seen = []
    real = rnnpose.predict.predict_split
    monkeypatch.setattr(rnnpose.predict, "predict_split",
                        lambda *a, **kw: seen.append(kw) or real(*a, **kw))  # fmt: skip
    assert main(argv) == 0
    assert seen[0]["flip"] is True and seen[0]["scales"] == (1.0, 1.5)
    monkeypatch.undo()
    printed = json.loads(capsys.readouterr().out)
    gt, results = predict_run(low_tau_run, data, flip=True, scales=(1.0, 1.5), quiet=True)
    assert printed["AP"] == pytest.approx(evaluate_keypoints(gt, results)["AP"])
    _, plain = predict_run(low_tau_run, data, quiet=True)
    joints = lambda rs: sum(int((np.reshape(r["keypoints"], (17, 3))[:, 2] > 0).sum())  # noqa: E731
                            for r in rs)  # fmt: skip
    assert len(results) == len(plain) > 0 and joints(results) > joints(plain)  # filled in
    # the split decodes its images in lock-step: the people of one image at a time, up to
    # rounding (a batch of 4 instead of 1 in the convolutions)
    from rnnpose.data.coco import read_image

    pred = Predictor(low_tau_run)
    for im in ann["images"]:
        one = pred.predict(read_image(data / "images" / im["file_name"]), flip=True,
                           scales=(1.0, 1.5)).people  # fmt: skip
        mine = [r for r in results if r["image_id"] == im["id"]]
        assert len(mine) == len(one)
        for r, q in zip(mine, one, strict=True):
            assert r["score"] == pytest.approx(q["score"], abs=1e-5)
            np.testing.assert_allclose(np.reshape(r["keypoints"], (17, 3)), q["keypoints"],
                                       atol=1e-4)  # fmt: skip


@pytest.mark.parametrize("scales", [["0"], ["-1"], ["nan"], ["inf"], ["abc"], ["1", "0"]])
@pytest.mark.parametrize("command", ["eval", "predict"])
def test_bad_scales_are_refused_with_one_line(runs, tiny_synth, tmp_path, capsys, scales,
                                              command):  # fmt: skip
    out = tmp_path / "o"
    argv = (["eval", "--run", str(runs["ae"]), "--data", str(tiny_synth)] if command == "eval"
            else ["predict", str(tiny_synth / "images" / "000000.png"), "--run", str(runs["ae"]),
                  "--out", str(out)])  # fmt: skip
    assert main([*argv, "--scales", *scales, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    bad = next(s for s in scales if s != "1")
    assert err == [f"rnnpose {command}: error: --scales: {bad!r} is not a positive finite number"]
    assert not out.exists()


def test_rmpp_scales_must_include_1_and_gt_takes_no_scales(runs, tiny_synth, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["predict", str(tiny_synth / "images" / "000000.png"), "--run", str(runs["rmpp"]),
            "--out", str(out), "--scales", "1.5", "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the scales must include 1" in err[0] and str(runs["rmpp"]) in err[0]
    assert not out.exists()
    # the AE method has no such need; predict passes the scales on
    assert main([*argv[:-1], "--method", "ae", "--flip", "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    from rnnpose.data.coco import read_image

    want = Predictor(runs["rmpp"], method="ae").predict(
        read_image(tiny_synth / "images" / "000000.png"), flip=True, scales=(1.5,)).people
    other = Predictor(runs["rmpp"], method="ae").predict(
        read_image(tiny_synth / "images" / "000000.png"), flip=True).people
    assert res == coco_results(want, 1) != coco_results(other, 1)
    gt = tiny_synth / "annotations.json"
    assert main(["eval", "--gt", str(gt), "--results", str(gt), "--scales", "1"]) == 2
    assert "need --run" in capsys.readouterr().err
