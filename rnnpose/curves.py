"""Does the decoder catch AE when it trains longer? AP against the decoder's Adam steps.

A curve is a table with one row per (seed, epoch, split): ``seed``, ``epoch``, ``step`` (Adam
steps so far), ``split``, ``AP`` (:meth:`rnnpose.experiments.Experiment.curve` for one run;
:func:`stack` for several seeds). The question of issue 22 is read off it against AE's
grouping on the same frozen network: the gap RMPP - AE at each doubling of the budget, its
change per doubling, and one sentence that says whether the gap closes, narrows (by how much
per doubling) or narrows by no more than the seed spread at the budgets measured. Nothing here
extrapolates silently: :func:`answer` labels the one extrapolation it makes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from rnnpose.config import Profile
    from rnnpose.results import Snapshot

COLUMNS = ("seed", "epoch", "step", "split", "AP")


def stack(curves: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """One table from ``{seed: curve of that seed's run}``."""
    frames = [c.assign(seed=int(s)) for s, c in curves.items()]
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(frames, ignore_index=True)


def check(curve: pd.DataFrame, where: str = "curve") -> pd.DataFrame:
    """``curve`` with its columns checked (a missing column or a non-numeric step/AP is a
    ``ValueError`` naming it): the boundary for curves read back from results files."""
    missing = [c for c in COLUMNS if c not in curve.columns]
    if missing:
        raise ValueError(f"{where}: column(s) {', '.join(missing)} missing")
    for col in ("seed", "epoch", "step", "AP"):
        if not pd.api.types.is_numeric_dtype(curve[col]):
            raise ValueError(f"{where}: column {col!r} must be numeric")
    if (curve["step"] <= 0).any():
        raise ValueError(f"{where}: column 'step' must be > 0")
    return curve


def doublings(steps: list[int] | np.ndarray) -> list[int]:
    """The step counts of ``steps`` that double the first one: s, 2s, 4s, ... (those present)."""
    steps = sorted({int(s) for s in steps})
    if not steps:
        return []
    out, target = [], steps[0]
    for s in steps:
        if s == target:
            out.append(s)
            target *= 2
    return out


def gaps(curve: pd.DataFrame, ae: Mapping[str, float], splits: list[str]) -> pd.DataFrame:
    """The gap RMPP - AE at each doubling of the budget, per split: ``step``, ``split``,
    the mean gap over the seeds, their range (``seed range``: max - min of the seeds' AP), and
    the change since the previous doubling (``per doubling``)."""
    curve = check(curve)
    rows = []
    for split in splits:
        part = curve[curve["split"] == split]
        previous = None
        for step in doublings(part["step"].to_numpy()):
            ap = part.loc[part["step"] == step, "AP"].to_numpy(dtype=float)
            gap = float(ap.mean()) - float(ae[split])
            change = np.nan if previous is None else gap - previous
            rows.append({"split": split, "step": step, "seeds": len(ap),
                         "RMPP mean": float(ap.mean()), "AE": float(ae[split]), "gap": gap,
                         "seed range": float(ap.max() - ap.min()),
                         "per doubling": change})  # fmt: skip
            previous = gap
    return pd.DataFrame(rows)


def rate(table: pd.DataFrame, split: str, last: int = 2) -> float:
    """AP per doubling over the last ``last`` doublings of ``split`` in a :func:`gaps` table
    (least-squares slope of the gap against log2(steps)); NaN with fewer than two points."""
    part = table[table["split"] == split].tail(last + 1)
    if len(part) < 2:
        return math.nan
    return float(np.polyfit(np.log2(part["step"].to_numpy(float)), part["gap"].to_numpy(), 1)[0])


def verdict(table: pd.DataFrame, split: str, spread: float) -> str:
    """One clause for ``split``: "closes" (and whether the lead is more than the seed-to-seed
    ``spread``, AP points, or inside it: level), "narrows by X AP per doubling", "no narrowing
    this build can measure" (the change over the last two doublings is within ``spread``:
    flat, or too noisy to tell) or "widens"."""
    part = table[table["split"] == split]
    if part.empty:
        return f"{split}: no curve"
    end = part.iloc[-1]
    where = f"{split}: at {int(end['step']):,} Adam steps the gap is {end['gap']:+.1f} AP"
    inside = f"inside the seed spread of {spread:.1f} AP"
    if end["gap"] >= 0:
        if end["gap"] > spread:
            return f"{where}: the gap closes, the decoder ahead by more than the seed spread"
        return f"{where}: the gap closes, {inside} (level with AE, not ahead)"
    r = rate(table, split)
    if math.isnan(r):
        return f"{where} (one budget only: no rate)"
    if r > spread / 2:
        more = math.ceil(-end["gap"] / r - 1e-9)
        level = f", already {inside}" if -end["gap"] < spread else ""
        return (f"{where}{level}, and narrows by {r:.1f} AP per doubling (extrapolated at that "
                f"rate: {more} more doubling{'s' * (more != 1)}, {int(end['step']) * 2**more:,} "
                f"steps, to reach AE)")  # fmt: skip
    if r < -spread / 2:
        return f"{where} and widens by {-r:.1f} AP per doubling"
    return (f"{where}; over the last doublings it changed by {r:+.1f} AP per doubling, inside "
            f"the seed spread of {spread:.1f} AP: no narrowing this build can measure at this "
            "scale")  # fmt: skip


def answer(table: pd.DataFrame, splits: list[str], spread: float) -> str:
    """The one-sentence answer for the top of chapter 9: one clause per split."""
    return "; ".join(verdict(table, s, spread) for s in splits) + "."


def plot(curves: Mapping[str, pd.DataFrame], refs: Mapping[str, Mapping[str, float]],
         splits: list[str], title: str = "",
         ref_of: Mapping[str, str] | None = None) -> Figure:  # fmt: skip
    """AP against the decoder's Adam steps (log scale), one panel per split: one line per
    (build, seed) of ``curves`` (``{build label: curve}``), and a horizontal line per reference
    of ``refs`` (``{reference label: {split: AP}}``, e.g. AE's grouping and AE's heatmaps grouped
    by the ground truth). ``ref_of`` maps a reference to the build whose AE network it measures
    (drawn in that build's colour; the others in black): builds on other networks have other
    references."""
    fig = Figure(figsize=(4.2 * len(splits), 3.6))
    axes = np.atleast_1d(fig.subplots(1, len(splits), sharey=True))
    markers = "os^Dv"
    colour = {label: f"C{k}" for k, label in enumerate(curves)}
    # the first build on top, hollow: where two builds share a point or an AE network (the
    # long build's default budget is the default build's), both stay visible
    first = next(iter(curves), None)
    for ax, split in zip(axes, splits, strict=True):
        for k, (label, curve) in enumerate(curves.items()):
            part = curve[curve["split"] == split]
            for seed, line in part.groupby("seed"):
                line = line.sort_values("step")
                top = label == first
                ax.plot(line["step"], line["AP"], marker=markers[k % len(markers)],
                        ms=7 if top else 4, mfc="none" if top else None, zorder=4 if top else 2,
                        color=colour[label], alpha=0.9, label=f"{label}, seed {seed}")  # fmt: skip
        for j, (label, values) in enumerate(refs.items()):
            if split in values:
                owner = (ref_of or {}).get(label, "")
                ax.axhline(values[split], color=colour.get(owner, "k"),
                           ls=("--", ":", "-.", (0, (5, 1)))[j % 4], lw=1,
                           zorder=3 if owner == first else 1, label=label)  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set(title=split, xlabel="decoder Adam steps (log scale)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("AP")
    handles, labels = axes[-1].get_legend_handles_labels()
    rows = math.ceil(len(labels) / 3)  # the legend under the panels, clear of made_on's line
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=3, frameon=False,
               bbox_to_anchor=(0.5, 0.02))  # fmt: skip
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 + 0.055 * rows, 1, 1))
    return fig


def to_wide(curve: pd.DataFrame) -> pd.DataFrame:
    """A curve as one numeric row per (seed, epoch) -- ``seed``, ``epoch``, ``step`` and
    ``AP <split>`` per split -- the shape a results file records."""
    curve = check(curve)
    wide = curve.pivot_table(index=["seed", "epoch", "step"], columns="split", values="AP")
    wide.columns = [f"AP {c}" for c in wide.columns]
    wide = wide.reset_index()
    wide.index = [f"seed {int(s)}, epoch {int(e)}" for s, e in zip(wide["seed"], wide["epoch"],
                                                                   strict=True)]  # fmt: skip
    return wide


def from_wide(wide: pd.DataFrame, where: str = "curve") -> pd.DataFrame:
    """The inverse of :func:`to_wide` (a curve read back from a results file, checked)."""
    aps = [c for c in wide.columns if str(c).startswith("AP ")]
    missing = [c for c in ("seed", "epoch", "step") if c not in wide.columns]
    if missing or not aps:
        raise ValueError(f"{where}: column(s) {', '.join(missing) or 'AP <split>'} missing")
    long = wide.melt(id_vars=["seed", "epoch", "step"], value_vars=aps, var_name="split",
                     value_name="AP").dropna(subset=["AP"])  # fmt: skip
    long["split"] = long["split"].str[3:]
    for col in ("seed", "epoch", "step"):
        long[col] = long[col].astype(int)
    return check(long.reset_index(drop=True), where)


def long_build(
    curve: pd.DataFrame, refs: dict[str, dict[str, float]], profile: Profile,
    snapshot: Snapshot | None,
    campaign: tuple[pd.DataFrame, dict[str, dict[str, float]], str] | None = None,
) -> tuple[pd.DataFrame | None, dict | None, str]:  # fmt: skip
    """The curve that answers the question, its AE references and where it comes from: this
    build's own where its profile evaluates every epoch (the long build), else the published
    snapshot's (``decoder_curve`` and ``ae_reference`` tables), else the long-budget diagnosis
    runs' (``campaign``: :func:`rnnpose.diagnosis.long_campaign`, on their own frozen AE),
    else none."""
    if profile.rmpp_curve:
        return curve, refs, f"this build (profile `{profile.name}`)"
    found = published_curve(snapshot)
    if found is not None:
        return found
    if campaign is not None:
        return campaign
    return None, None, ""


def published_curve(snapshot: Snapshot | None,
                    ) -> tuple[pd.DataFrame, dict[str, dict[str, float]], str] | None:  # fmt: skip
    """The published build's decoder curve (its ``decoder_curve`` table, checked), its AE
    references (``ae_reference``: ``{reference: {split: AP}}``) and a source line naming the
    build, its CPU and commit; None where the snapshot holds no such pair."""
    if snapshot is None:
        return None
    wide, ref = snapshot.numbers("decoder_curve"), snapshot.numbers("ae_reference")
    if wide is None or ref is None:
        return None
    where = f"{snapshot.folder}/results.json, table decoder_curve"
    commit = str(snapshot.header.get("commit") or "?")[:7]
    return (from_wide(wide, where), ref.T.to_dict(),
            f"the published {snapshot.label[11:-1]} ({snapshot.machine}, commit {commit})")


def headline(curve: pd.DataFrame | None, refs: dict | None, splits: list[str], spread: float,
             source: str) -> str:  # fmt: skip
    """The one-sentence answer at the top of chapter 9, or why there is none yet."""
    q = "**Does the decoder catch AE's grouping when it trains longer?**"
    if curve is None or refs is None:
        return (f"{q} Not measured by this build: its decoder trains for one budget only, and "
                "no long build is published yet (`make book PROFILE=long`, about 4 hours on 2 "
                "cores, measures it; see the section below).")
    return f"{q} From {source}: " + answer(gaps(curve, refs["AE grouping"], splits), splits,
                                            spread)  # fmt: skip
