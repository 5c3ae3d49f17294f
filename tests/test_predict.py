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
from rnnpose.evaluate import evaluate_keypoints
from rnnpose.predict import Predictor, collect_images, predict_run
from rnnpose.train.ae import train_ae
from rnnpose.train.rmpp import train_rmpp

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def runs(tiny_synth, tmp_path_factory):
    """A tiny AE run and a tiny RMPP run on it (one epoch each, seed 0), trained once."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    ae = train_ae("tiny", tiny_synth, root / "ae", epochs=1, quiet=True)
    rmpp = train_rmpp(None, ae, tiny_synth, root / "rmpp", quiet=True, epochs=1, T=2,
                      batch_size=8)  # fmt: skip
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
    assert isinstance(results, list)
    for r in results:
        assert set(r) == {"image_id", "category_id", "keypoints", "score"}
        assert r["category_id"] == 1 and 1 <= r["image_id"] <= n_images
        assert len(r["keypoints"]) == 51 and np.isfinite(r["keypoints"]).all()


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
    # people come back in the original pixels of each image (within the letterbox)
    for r in results:
        f = files[r["image_id"] - 1]
        kp = np.asarray(r["keypoints"]).reshape(17, 3)
        assert (kp[:, 0] > -f["width"]).all() and (kp[:, 0] < 2 * f["width"]).all()


def test_greyscale_png_gives_the_same_people_as_its_rgb_copy(runs, tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, (50, 70), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "c.png")
    pred = Predictor(runs["rmpp"])
    from rnnpose.data.coco import read_image

    g, c = read_image(tmp_path / "g.png"), read_image(tmp_path / "c.png")
    assert g.shape == (50, 70, 3) and np.array_equal(g, c)
    pg, pc = pred.predict(g), pred.predict(c)
    assert len(pg.people) == len(pc.people)
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
    for r in results:
        r["image_id"] = files[r["image_id"]]
    metrics = evaluate_keypoints(gt_file, results)
    assert set(metrics) >= {"AP", "AP50", "AP75", "APM", "APL", "AR"}
    assert all(0.0 <= metrics[k] <= 100.0 for k in ("AP", "AR"))  # poor, but valid


def test_eval_run_prints_the_ap_table(runs, tiny_synth, capsys):
    assert main(["eval", "--run", str(runs["rmpp"]), "--data", str(tiny_synth),
                 "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "AP" in out and "AP50" in out and "AR" in out
    gt, results = predict_run(runs["ae"], tiny_synth, quiet=True)
    m = evaluate_keypoints(gt, results)
    assert 0.0 <= m["AP"] <= 100.0
    # --method ae on an RMPP run evaluates its AE network's grouping: the AE run's numbers
    gt, ae_results = predict_run(runs["rmpp"], tiny_synth, method="ae", quiet=True)
    assert main(["eval", "--run", str(runs["rmpp"]), "--data", str(tiny_synth), "--method",
                 "ae", "--device", "cpu", "--json", "--quiet"]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert printed["AP"] == pytest.approx(evaluate_keypoints(gt, ae_results)["AP"])


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

    from rnnpose.train.common import progress

    monkeypatch.delenv("RNNPOSE_QUIET", raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    assert progress(range(3)).disable
    tty = io.StringIO()
    tty.isatty = lambda: True
    monkeypatch.setattr("sys.stderr", tty)
    assert not progress(range(3), file=tty).disable
    assert progress(range(3), quiet=True).disable
