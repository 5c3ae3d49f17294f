"""AP against the decoder's budget (issue 22): gaps at each doubling, the rate per doubling and
the one-sentence answer, on curves with known answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from rnnpose import curves


def curve(ap_at, seeds=(0, 1), jitter=0.5, steps=(600, 1200, 1800, 2400, 3000, 4800)):
    """Seed s has AP ``ap_at(step) + (s - 0.5) * jitter`` on both splits."""
    rows = [{"seed": s, "epoch": k + 1, "step": st, "split": sp,
             "AP": ap_at(st, sp) + (s - 0.5) * jitter}
            for s in seeds for k, st in enumerate(steps)
            for sp in ("sparse", "occluded")]  # fmt: skip
    return pd.DataFrame(rows)


def test_doublings_keep_the_budgets_that_double_the_first():
    assert curves.doublings([1200, 600, 1800, 2400, 3000, 4200, 4800]) == [600, 1200, 2400, 4800]
    assert curves.doublings([1200]) == [1200]
    assert curves.doublings([]) == []


def test_gaps_and_rate_per_doubling_known_answer():
    # 10 AP at 600 steps, +2 AP per doubling: 12, 14, 16 at 1200, 2400, 4800; AE at 20 / 15
    c = curve(lambda st, sp: 10 + 2 * math.log2(st / 600))
    t = curves.gaps(c, {"sparse": 20.0, "occluded": 15.0}, ["sparse", "occluded"])
    sp = t[t["split"] == "sparse"]
    assert list(sp["step"]) == [600, 1200, 2400, 4800]
    assert list(sp["gap"]) == pytest.approx([-10, -8, -6, -4])
    assert list(sp["seed range"]) == pytest.approx([0.5] * 4)
    assert math.isnan(sp["per doubling"].iloc[0])
    assert list(sp["per doubling"].iloc[1:]) == pytest.approx([2, 2, 2])
    assert curves.rate(t, "sparse") == pytest.approx(2.0)
    text = curves.verdict(t, "sparse", spread=1.0)
    assert "-4.0 AP" in text and "narrows by 2.0 AP per doubling" in text
    assert "extrapolated" in text and "2 more doublings, 19,200 steps" in text
    occ = curves.verdict(t, "occluded", spread=1.0)  # 16 against 15, by one spread: level
    assert "+1.0 AP" in occ and "closes" in occ and "level with AE, not ahead" in occ
    occ = curves.verdict(t, "occluded", spread=0.5)  # ahead by twice the spread
    assert "ahead by more than the seed spread" in occ and "level" not in occ
    # a gap behind AE but inside the spread is said to be so, beside its rate
    fast = curves.gaps(curve(lambda st, sp: 10 + 4 * math.log2(st / 600)),
                       {"sparse": 24.0}, ["sparse"])  # 22 at 4,800 steps  # fmt: skip
    near = curves.verdict(fast, "sparse", spread=3.0)
    assert "-2.0 AP, already inside the seed spread of 3.0 AP, and narrows by 4.0" in near
    assert "inside" not in text


def test_a_flat_or_falling_curve_is_said_so():
    flat = curve(lambda st, sp: 10 + (0.2 if st >= 2400 else 0.0))
    t = curves.gaps(flat, {"sparse": 20.0, "occluded": 20.0}, ["sparse", "occluded"])
    assert "no narrowing this build can measure" in curves.verdict(t, "sparse", spread=1.0)
    # a real but small narrowing against a wide spread is not called narrowing either
    slow = curve(lambda st, sp: 10 + 2 * math.log2(st / 600))
    t = curves.gaps(slow, {"sparse": 20.0, "occluded": 20.0}, ["sparse"])
    text = curves.verdict(t, "sparse", spread=5.0)
    assert "+2.0 AP per doubling, inside the seed spread of 5.0" in text
    assert "narrows by" not in text
    falling = curve(lambda st, sp: 10 - 3 * math.log2(st / 600))
    t = curves.gaps(falling, {"sparse": 20.0, "occluded": 20.0}, ["sparse"])
    assert "widens by 3.0 AP per doubling" in curves.verdict(t, "sparse", spread=1.0)
    one = curve(lambda st, sp: 10.0, steps=(1200,))
    t = curves.gaps(one, {"sparse": 20.0, "occluded": 20.0}, ["sparse"])
    assert "one budget only" in curves.answer(t, ["sparse"], spread=1.0)


def test_a_curve_without_its_columns_is_refused():
    with pytest.raises(ValueError, match="step"):
        curves.check(pd.DataFrame({"seed": [0], "epoch": [1], "split": ["sparse"], "AP": [1.0]}))
    bad = curve(lambda st, sp: 1.0).assign(step=0)
    with pytest.raises(ValueError, match="'step' must be > 0"):
        curves.gaps(bad, {"sparse": 1.0}, ["sparse"])


def test_plot_draws_one_line_per_build_and_seed_and_each_reference():
    long = curve(lambda st, sp: 10 + 2 * math.log2(st / 600))
    default = curve(lambda st, sp: 11.0, seeds=(0,), steps=(1200,))
    fig = curves.plot({"long build": long, "default build": default},
                      {"AE grouping": {"sparse": 20.0, "occluded": 15.0},
                       "AE heatmaps, ground-truth grouping": {"sparse": 30.0}},
                      ["sparse", "occluded"])  # fmt: skip
    sparse_ax, occluded_ax = fig.axes
    assert sparse_ax.get_xscale() == "log"
    assert len(sparse_ax.lines) == 2 + 1 + 2 and len(occluded_ax.lines) == 2 + 1 + 1
    long0 = sparse_ax.lines[0]
    assert list(long0.get_xdata()) == [600, 1200, 1800, 2400, 3000, 4800]
    assert list(long0.get_ydata())[-1] == pytest.approx(16 - 0.25)


def test_each_reference_takes_the_colour_of_the_build_whose_network_it_measures():
    long = curve(lambda st, sp: 12.0, seeds=(0,), steps=(600, 4800))
    default = curve(lambda st, sp: 11.0, seeds=(0,), steps=(1200,))
    fig = curves.plot({"this build": default, "long budget": long},
                      {"AE (this build)": {"sparse": 20.0}, "AE (long budget)": {"sparse": 18.0},
                       "somebody's": {"sparse": 5.0}}, ["sparse"],
                      ref_of={"AE (this build)": "this build", "AE (long budget)": "long budget"})
    lines = {ln.get_label(): ln for ln in fig.axes[0].lines}
    assert lines["this build, seed 0"].get_color() == lines["AE (this build)"].get_color() == "C0"
    assert lines["long budget, seed 0"].get_color() == lines["AE (long budget)"].get_color() == "C1"
    assert lines["somebody's"].get_color() == "k"
    # the first build is drawn above the others (hollow markers, higher zorder), its
    # reference above theirs: a point or line two builds share shows both
    assert lines["this build, seed 0"].get_zorder() > lines["long budget, seed 0"].get_zorder()
    assert lines["this build, seed 0"].get_markerfacecolor() == "none"
    assert lines["AE (this build)"].get_zorder() > lines["AE (long budget)"].get_zorder()
    assert list(lines["AE (long budget)"].get_ydata()) == [18.0, 18.0]


def test_the_long_build_s_curve_comes_from_the_build_then_the_snapshot_then_the_campaign():
    from rnnpose.config import get_profile

    own = curve(lambda st, sp: 1.0)
    refs = {"AE grouping": {"sparse": 2.0}}
    campaign = (curve(lambda st, sp: 3.0), {"AE grouping": {"sparse": 4.0}}, "the runs")
    assert curves.long_build(own, refs, get_profile("tiny").replace(rmpp_curve=True), None,
                             campaign)[0] is own  # fmt: skip
    assert curves.long_build(own, refs, get_profile("tiny"), None, campaign) == campaign
    assert curves.long_build(own, refs, get_profile("tiny"), None) == (None, None, "")


def test_a_curve_survives_the_results_file():
    from rnnpose.results import frame_from_json, frame_to_json

    c = curve(lambda st, sp: 10 + math.log2(st / 600), steps=(600, 1200))
    wide = curves.to_wide(c)
    assert list(wide.columns) == ["seed", "epoch", "step", "AP occluded", "AP sparse"]
    assert list(wide.index) == ["seed 0, epoch 1", "seed 0, epoch 2", "seed 1, epoch 1",
                                "seed 1, epoch 2"]  # fmt: skip
    back = curves.from_wide(frame_from_json(frame_to_json(wide)))
    key = ["seed", "step", "split"]
    a = c.sort_values(key).reset_index(drop=True)[["seed", "epoch", "step", "split", "AP"]]
    b = back.sort_values(key).reset_index(drop=True)[["seed", "epoch", "step", "split", "AP"]]
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    with pytest.raises(ValueError, match="step"):
        curves.from_wide(wide.drop(columns="step"))
