"""RMPP training: overfitting a handful of images (features given), resume equality, the
frozen-AE feature cache and its statistics, the CLI end to end."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from rnnpose.checkpoint import save_checkpoint
from rnnpose.cli import main
from rnnpose.config import get_profile
from rnnpose.data.coco import read_image
from rnnpose.decode import decode
from rnnpose.features import (
    ChannelStats,
    FeatureSet,
    cache_key,
    extract_features,
    load_feature_set,
)
from rnnpose.io import DataError
from rnnpose.models.hourglass import AEOutput, PoseNet
from rnnpose.train.common import NonFiniteLossError, RunDir
from rnnpose.train.rmpp import fit_rmpp, load_rmpp, person_targets

PROF = get_profile("tiny", rmpp_lr=5e-3, loop=0, max_iterations=5, T=2)


def synthetic_features(zs, seed=0, channels=8, repeat=1):
    """Features that show where the people's joints are (joint groups, max over people)."""
    g = torch.Generator().manual_seed(seed)
    kps, feats = [], []
    for z in zs:
        kp = torch.zeros(z, 17, 3)
        for k in range(z):
            centre = torch.rand(2, generator=g) * 32 + 16
            kp[k, :, :2] = centre + (torch.rand(17, 2, generator=g) - 0.5) * 24
        kp[..., 2] = 2
        kps.append(kp)
        f = 0.05 * torch.randn(channels, 16, 16, generator=g)
        if z:
            shared = person_targets(kp, PROF).amax(0)
            f += torch.stack([shared[c::channels].amax(0) for c in range(channels)])
        feats.append(f)
    x = torch.stack(feats).repeat(repeat, 1, 1, 1)
    return FeatureSet(x.half(), kps * repeat, list(range(len(x))), x.mean((0, 2, 3)),
                      x.var((0, 2, 3)))  # fmt: skip


def test_overfits_to_the_right_number_of_people(tmp_path):
    zs = [1, 2, 0, 3]
    fs = synthetic_features(zs, repeat=6)
    out = fit_rmpp(fs, PROF, tmp_path / "run", options={"epochs": 16, "batch_size": 4, "T": 4},
                   quiet=True)  # fmt: skip
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["stop"] < log[0]["stop"] and log[-1]["total"] < log[0]["total"]
    model, ae, prof, opts = load_rmpp(out, with_ae=False)
    assert ae is None and opts["batch_size"] == 4 and prof.rmpp_epochs == 16
    torch.testing.assert_close(model.norm.mean, fs.mean)  # dataset statistics are kept
    res = decode(model, fs.features[:4].float(), prof.omega, max_iterations=prof.max_iterations)
    assert [len(r["p"]) for r in res] == zs


def test_resume_equals_uninterrupted(tmp_path):
    fs = synthetic_features([2, 1, 0], repeat=2)
    opts = {"batch_size": 3, "T": 1}
    straight = fit_rmpp(fs, PROF, tmp_path / "a", options={**opts, "epochs": 2}, quiet=True)
    fit_rmpp(fs, PROF, tmp_path / "b", options={**opts, "epochs": 1}, quiet=True)
    resumed = fit_rmpp(fs, PROF, tmp_path / "b", options={**opts, "epochs": 2}, quiet=True,
                       resume=True)  # fmt: skip
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(resumed / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    with pytest.raises(DataError, match="cannot resume"):
        fit_rmpp(fs, PROF, tmp_path / "b", options={**opts, "epochs": 3, "T": 2}, quiet=True,
                 resume=True)  # fmt: skip


def test_nan_guard_stops_before_the_update(tmp_path):
    fs = synthetic_features([1, 2])
    fs.features[1, 0, 3, 3] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1; training stopped \(no "
                       r"checkpoint was written\)"):  # fmt: skip
        fit_rmpp(fs, PROF, tmp_path / "nan", options={"batch_size": 2, "epochs": 1}, quiet=True)
    assert not (tmp_path / "nan").exists()  # config.json comes with the first checkpoint


def test_literal_batch_one_trains(tmp_path):
    fs = synthetic_features([1, 0])
    out = fit_rmpp(fs, PROF, tmp_path / "r", options={"batch_size": 1, "epochs": 1,
                   "sgd": "exact", "ordering": "random"}, quiet=True)  # fmt: skip
    rec = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert rec["step"] == 2 and rec["total"] > 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "rmpp" and cfg["options"]["sgd"] == "exact"


class FakeAE(nn.Module):
    """AEOutput-shaped: 2 stacks x 3 features = the image's channels scaled by stack index."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        small = nn.functional.avg_pool2d(images, 4)  # [B,3,M,M]
        feats = torch.stack([small, 2 * small], dim=1)  # [B,2,3,M,M]
        b, _, _, m, _ = feats.shape
        return AEOutput(torch.zeros(b, 2, 17, m, m), torch.zeros(b, 2, 17, m, m), feats)


class ToyData(torch.utils.data.Dataset):
    def __init__(self, n=5):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, 16, 16, generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "keypoints": torch.full((i % 3, 17, 3), float(i)),
                "image_id": 100 + i}  # fmt: skip


def test_features_and_statistics(tmp_path):
    ae, data = FakeAE(), ToyData()
    fs = extract_features(ae, data, batch_size=2, cache_file=tmp_path / "f.pt")
    assert fs.features.dtype == torch.float16 and fs.features.shape == (5, 6, 4, 4)
    small = nn.functional.avg_pool2d(data.images, 4)
    want = torch.cat([small, 2 * small], 1)
    torch.testing.assert_close(fs.features.float(), want, atol=2e-3, rtol=0)
    torch.testing.assert_close(fs.mean, want.mean((0, 2, 3)))
    torch.testing.assert_close(fs.var, want.var((0, 2, 3), unbiased=False), rtol=1e-4, atol=1e-6)
    assert fs.image_ids == [100, 101, 102, 103, 104] and [len(k) for k in fs.keypoints] == [
        0, 1, 2, 0, 1]  # fmt: skip
    assert ae.calls == 3
    again = extract_features(ae, data, batch_size=2, cache_file=tmp_path / "f.pt")
    assert ae.calls == 3  # served from the cache
    assert torch.equal(again.features, fs.features) and again.image_ids == fs.image_ids
    assert not list(tmp_path.glob(".*tmp"))  # atomic: no temp file left
    assert load_feature_set(tmp_path / "f.pt").mean.shape == (6,)


def test_channel_stats_streaming_equals_global():
    x = torch.randn(7, 3, 5, 5) * 3 + 1
    st = ChannelStats()
    for chunk in x.split(3):
        st.update(chunk)
    mean, var = st.result()
    torch.testing.assert_close(mean, x.mean((0, 2, 3)))
    torch.testing.assert_close(var, x.var((0, 2, 3), unbiased=False), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError):
        ChannelStats().result()


def test_cache_key_depends_on_checkpoint_data_and_profile(tmp_path):
    ck = tmp_path / "last.pt"
    ck.write_bytes(b"weights-1")
    tiny, cpu = get_profile("tiny"), get_profile("cpu")
    k = cache_key(ck, tmp_path / "a.json", tiny)
    assert k == cache_key(ck, tmp_path / "a.json", tiny)
    assert k != cache_key(ck, tmp_path / "b.json", tiny)
    assert k != cache_key(ck, tmp_path / "a.json", cpu)
    ck.write_bytes(b"weights-2")
    assert k != cache_key(ck, tmp_path / "a.json", tiny)


def test_cli_train_rmpp_end_to_end(tmp_path, tiny_synth):
    prof = get_profile("tiny")
    torch.manual_seed(0)
    ae_run = RunDir(tmp_path / "ae")  # an untrained AE run is enough to exercise the stage
    ae_run.path.mkdir()
    cfg = {"method": "ae", "profile": prof.to_dict(), "seed": 0, "bn": True}
    ae_run.write_config(cfg)
    save_checkpoint(ae_run.last, model=PoseNet(prof), config=cfg, epoch=1, step=1)
    out = tmp_path / "rmpp"
    argv = ["train", "rmpp", "--ae", str(ae_run.path), "--data", str(tiny_synth), "--out",
            str(out), "--epochs", "1", "--batch-size", "8", "--T", "2", "--quiet",
            "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    rec = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert rec["epoch"] == 1 and rec["step"] == 2 and rec["total"] > 0
    assert len(list((ae_run.path / "rmpp_features").glob("*.pt"))) == 1
    model, ae, p, opts = load_rmpp(out)
    assert isinstance(ae, PoseNet) and p.T == 2 and opts["T"] == 2
    assert model.norm.var.min() > 0  # statistics of the real AE features were fitted
    assert main([*argv, "--loss-config", "zz"]) == 2  # argparse refuses an unknown configuration
    bad = ["train", "rmpp", "--ae", str(tmp_path / "nope"), "--data", str(tiny_synth), "--out",
           str(tmp_path / "x"), "--quiet"]  # fmt: skip
    assert main(bad) == 2  # a missing AE run is one clear error line


def test_real_interruption_then_resume_equals_uninterrupted(tmp_path, monkeypatch):
    """KeyboardInterrupt inside epoch 2 after one more optimiser step, then resume."""
    from rnnpose.train import rmpp as train_module

    fs = synthetic_features([2, 1, 0], repeat=2)  # 6 images, batch 3: 2 steps per epoch
    opts = {"batch_size": 3, "T": 1, "epochs": 2}
    straight = fit_rmpp(fs, PROF, tmp_path / "a", options=opts, quiet=True)
    real, calls = train_module.batched_step, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # second batch of epoch 2: step 3 was already applied
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "batched_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit_rmpp(fs, PROF, tmp_path / "b", options=opts, quiet=True)
    assert torch.load(tmp_path / "b" / "last.pt", weights_only=True)["step"] == 2
    monkeypatch.setattr(train_module, "batched_step", real)
    resumed = fit_rmpp(fs, PROF, tmp_path / "b", options=opts, quiet=True, resume=True)
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(resumed / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_warm_start_copies_the_weights_that_fit(tmp_path):
    from rnnpose.models.rmpp import RMPP
    from rnnpose.train.rmpp import warm_start

    fs = synthetic_features([2, 1], repeat=2)
    base = fit_rmpp(fs, PROF, tmp_path / "base", options={"epochs": 1, "batch_size": 2},
                    quiet=True)  # fmt: skip
    trained = load_rmpp(base, with_ae=False)[0].state_dict()
    same = RMPP(PROF)
    names = warm_start(same, base)
    assert len(names) == sum(not k.startswith("norm.") for k in trained)
    for k in names:
        torch.testing.assert_close(same.state_dict()[k], trained[k], rtol=0, atol=0)
    deeper = RMPP(PROF.replace(lstm2_depth=3))
    fresh = {k: v.clone() for k, v in deeper.state_dict().items()}
    kept = warm_start(deeper, base)
    assert any(k.startswith("lstm1") for k in kept) and len(kept) < len(names)
    extra = [k for k in fresh if k not in trained or trained[k].shape != fresh[k].shape]
    assert extra and all(k not in kept for k in extra)  # the new LSTM2 layer starts fresh
    for k in extra:
        torch.testing.assert_close(deeper.state_dict()[k], fresh[k], rtol=0, atol=0)
    # a run started with --init records it and continues from those weights
    out = fit_rmpp(fs, PROF, tmp_path / "ft", options={"epochs": 1, "batch_size": 2,
                   "init": str(base)}, quiet=True)  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["options"]["init"] == str(base) and config["init_weights"] == len(names)
    from rnnpose.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=r"nope/last\.pt: checkpoint not found"):
        fit_rmpp(fs, PROF, tmp_path / "bad", options={"init": str(tmp_path / "nope")},
                 quiet=True)  # fmt: skip
    assert not (tmp_path / "bad").exists()  # nothing written before the inputs are checked


def test_ablation_switches_reach_the_model_and_the_step(tmp_path, monkeypatch):
    """Every switch of section 4 given to training ends up where it acts: the step's config
    (T, sgd, ordering, loss configuration, omega), the model (loop passes, LSTM2 depth or no
    LSTM2) -- and is read back from the run folder."""
    from rnnpose.train import rmpp as train_module

    seen = []
    real = train_module.batched_step

    def capture(model, feats, gts, cfg, **kwargs):
        seen.append((model, cfg))
        return real(model, feats, gts, cfg, **kwargs)

    monkeypatch.setattr(train_module, "batched_step", capture)
    fs = synthetic_features([1, 2])
    opts = {"epochs": 1, "batch_size": 2, "T": 3, "sgd": "exact", "loop": 3, "omega": 0.4,
            "ordering": "inverse", "loss_config": "bb'", "lstm2_depth": 3,
            "max_iterations": 4}  # fmt: skip
    out = fit_rmpp(fs, PROF, tmp_path / "a", options=opts, quiet=True)
    model, cfg = seen[0]
    assert (cfg.T, cfg.sgd, cfg.ordering, cfg.loss_config, cfg.omega) == (
        3, "exact", "inverse", "bb'", 0.4)  # fmt: skip
    assert cfg.max_iterations == 4 != PROF.max_iterations
    assert model.lstm1.passes == 3 and len(model.lstm2.lstm.cells) == 3
    loaded, _, prof, options = load_rmpp(out, with_ae=False)
    assert loaded.lstm1.passes == 3 and len(loaded.lstm2.lstm.cells) == 3
    assert (prof.T, prof.loop, prof.omega, prof.lstm2_depth) == (3, 3, 0.4, 3)
    assert prof.max_iterations == 4 and options["max_iterations"] == 4
    assert (options["sgd"], options["ordering"], options["loss_config"]) == ("exact", "inverse",
                                                                            "bb'")  # fmt: skip
    seen.clear()
    out = fit_rmpp(fs, PROF, tmp_path / "b", options={"epochs": 1, "batch_size": 2,
                   "use_lstm2": False}, quiet=True)  # fmt: skip
    assert seen[0][0].lstm2 is None and load_rmpp(out, with_ae=False)[0].lstm2 is None
    rec = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert rec["heatmap2"] == 0.0 and rec["heatmap1"] > 0


def test_resume_key_fills_profile_fields_added_since():
    """A run started before a Profile field existed resumes when the field is at its default,
    and is refused when the field was changed."""
    from rnnpose.train.rmpp import _check_resume

    new = {"method": "rmpp", "profile": get_profile("tiny").to_dict(), "options": {}, "seed": 0}
    old = {**new, "profile": {k: v for k, v in new["profile"].items()
                              if k != "rmpp_ablation_eval"}}  # fmt: skip
    _check_resume({"config": old}, new, Path("last.pt"))  # the default: resumes
    changed = {**new, "profile": {**new["profile"], "rmpp_ablation_eval": 7}}
    with pytest.raises(DataError, match="different 'profile'"):
        _check_resume({"config": old}, changed, Path("last.pt"))


def test_resume_key_fills_options_added_since():
    """A run whose options predate ``subset`` and ``max_iterations`` resumes with them at their
    defaults, and is refused when one of them is set."""
    from rnnpose.train.rmpp import DEFAULT_OPTIONS, _check_resume

    prof = get_profile("tiny").to_dict()
    new = {"method": "rmpp", "profile": prof, "options": dict(DEFAULT_OPTIONS), "seed": 0}
    old_opts = {k: v for k, v in DEFAULT_OPTIONS.items() if k not in ("subset", "max_iterations")}
    old = {**new, "options": old_opts}
    _check_resume({"config": old}, new, Path("last.pt"))
    for key in ("subset", "max_iterations"):
        with pytest.raises(DataError, match="different 'options'"):
            _check_resume({"config": old}, {**new, "options": {**DEFAULT_OPTIONS, key: 2}},
                          Path("last.pt"))  # fmt: skip


def test_subset_and_max_iterations_through_train_eval_and_predict(tmp_path, tiny_synth, capsys):
    """``train rmpp --subset 5 --max-iterations 2``: features (and their statistics) of the
    first 5 images by id only, training on them, the cap recorded and obeyed when the run
    decodes; ``eval --subset 3`` predicts and scores the first 3 images only (features of
    their own), ``eval --subset 5`` reads the training run's features back."""
    from rnnpose.data.coco import load_coco
    from rnnpose.predict import Predictor

    prof = get_profile("tiny")
    torch.manual_seed(0)
    ae_run = RunDir(tmp_path / "ae")
    ae_run.path.mkdir()
    cfg = {"method": "ae", "profile": prof.to_dict(), "seed": 0, "bn": True}
    ae_run.write_config(cfg)
    save_checkpoint(ae_run.last, model=PoseNet(prof), config=cfg, epoch=1, step=1)
    out = tmp_path / "rmpp"
    assert main(["train", "rmpp", "--ae", str(ae_run.path), "--data", str(tiny_synth),
                 "--out", str(out), "--epochs", "1", "--batch-size", "5", "--subset", "5",
                 "--max-iterations", "2", "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["profile"]["max_iterations"] == 2
    assert (config["options"]["subset"], config["options"]["max_iterations"]) == (5, 2)
    ids = sorted(load_coco(tiny_synth / "annotations.json").imgs)
    feats = load_feature_set(config["features"])
    assert feats.image_ids == ids[:5] and len(ids) > 5
    assert json.loads((out / "log.jsonl").read_text())["step"] == 1  # one batch of 5
    predictor = Predictor(out, device="cpu")
    image = read_image(tiny_synth / "images" / "000000.png")
    decoded = predictor.predict(image, omega=1e-6).decoded  # omega ~0: only the cap stops it
    assert len(decoded["p"]) == 2
    capsys.readouterr()
    assert main(["eval", "--run", str(out), "--data", str(tiny_synth), "--subset", "3",
                 "--json", "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["images"] == 3
    caches = sorted((ae_run.path / "rmpp_features").glob("*.pt"))
    assert len(caches) == 2  # the first 5 (training) and the first 3 (eval): one file each
    assert sorted(len(load_feature_set(c)) for c in caches) == [3, 5]
    assert main(["eval", "--run", str(out), "--data", str(tiny_synth), "--subset", "5",
                 "--quiet", "--device", "cpu"]) == 0  # fmt: skip
    assert sorted((ae_run.path / "rmpp_features").glob("*.pt")) == caches  # training's, reused
