"""The records of the RMPP-vs-AE diagnosis runs (``experiments/diagnosis.py``), as tables and
plots for the book.

Every record is one JSON file under ``experiments/results/``: a decoder run (setting, seed,
budget, AP after the evaluated epochs on ``val`` / ``sparse`` / ``occluded``), an AE run, the
AE's evaluation (its grouping, the same heatmaps grouped by the ground truth, tag quality) or
its grouping-threshold grid. The files are read here and checked at the boundary: a file that is
not a record, or lacks a field the book reads, is a :class:`~rnnpose.io.DataError` naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rnnpose.io import DataError, PathLike, read_json
from rnnpose.results import is_number

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
SPLITS = ("val", "sparse", "occluded")
METRICS = ("AP", "AP50", "AP75", "count_exact")


def _check_run(path: Path, rec: Any) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise DataError(f"{path}: not a diagnosis record (a JSON object)")
    for key in ("setting", "seed", "images", "epochs", "adam_steps", "train_seconds", "curve"):
        if key not in rec:
            raise DataError(f"{path}: field {key!r} missing")
    if not isinstance(rec["curve"], list) or not rec["curve"]:
        raise DataError(f"{path}: field 'curve' must be a non-empty list")
    for point in rec["curve"]:
        splits = point.get("splits") if isinstance(point, dict) else None
        if not isinstance(splits, dict):
            raise DataError(f"{path}: field 'curve[].splits' missing")
        for key in ("epoch", "step"):
            v = point.get(key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise DataError(f"{path}: field 'curve[].{key}' must be an integer >= 1")
        for split, m in splits.items():
            if not isinstance(m, dict) or not all(
                isinstance(m.get(k), (int, float)) for k in ("AP", "AP50", "AP75")
            ):
                raise DataError(f"{path}: field 'curve[].splits.{split}' lacks AP numbers")
    return rec


def load_runs(folder: PathLike = RESULTS) -> dict[tuple[str, int], dict[str, Any]]:
    """Every decoder record ``{(setting, seed): record}`` in ``folder``."""
    out = {}
    for path in sorted(Path(folder).glob("*.json")):
        rec = read_json(path)
        if isinstance(rec, dict) and "curve" in rec:
            rec = _check_run(path, rec)
            out[(rec["setting"], int(rec["seed"]))] = rec
    return out


def load(name: str, folder: PathLike = RESULTS) -> dict[str, Any]:
    """One record file by its stem (e.g. ``ae-s0-eval``)."""
    path = Path(folder) / f"{name}.json"
    rec = read_json(path)
    if not isinstance(rec, dict):
        raise DataError(f"{path}: not a diagnosis record (a JSON object)")
    return rec


def final(rec: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The metrics after the run's last evaluated epoch, per split."""
    return rec["curve"][-1]["splits"]


def budget(rec: dict[str, Any]) -> dict[str, Any]:
    """What a run cost: images x epochs, Adam steps, wall time, processes x threads, CPU."""
    return {"images x epochs": f"{rec['images']} x {rec['epochs']}",
            "Adam steps": int(rec["adam_steps"]),
            "train min": round(rec["train_seconds"] / 60, 1),
            "procs x threads": f"{rec.get('procs', 1)} x {rec.get('threads', 1)}"}  # fmt: skip


def summary_table(
    runs: dict[tuple[str, int], dict[str, Any]],
    settings: Sequence[str],
    ae: dict[str, dict[str, float]] | None = None,
    splits: Sequence[str] = SPLITS,
    metrics: Sequence[str] = METRICS,
) -> pd.DataFrame:
    """One row per setting (the mean over its seeds, with the seeds' range in brackets when
    there are several): its budget and the final metrics per split; ``ae`` adds AE's row (its
    metrics per split, same network)."""
    rows = {}
    for s in settings:
        recs = [r for (name, _), r in sorted(runs.items()) if name == s]
        if not recs:
            continue
        row: dict[str, Any] = {"what changed": recs[0].get("desc", s), "seeds": len(recs),
                               **budget(recs[0])}  # fmt: skip
        for split in splits:
            for m in metrics:
                vals = [final(r)[split][m] for r in recs if split in final(r)]
                if not vals:
                    continue
                scale = 100.0 if m == "count_exact" else 1.0
                mean = float(np.mean(vals)) * scale
                cell = f"{mean:.1f}"
                if len(vals) > 1:
                    cell += f" ({(max(vals) - min(vals)) * scale:.1f})"
                row[(split, m)] = cell
        rows[s] = row
    if ae is not None:
        rows["AE grouping"] = {"what changed": "AE's own grouping, same frozen network",
                               **{(sp, m): f"{ae[sp][m] * (100 if m == 'count_exact' else 1):.1f}"
                                  for sp in splits if sp in ae for m in metrics if m in ae[sp]}}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = [c if isinstance(c, str) else f"{c[0]} {c[1]}" for c in table.columns]
    for col in ("seeds", "Adam steps"):  # counts, blank on AE's row
        if col in table:
            table[col] = [("" if pd.isna(v) else str(int(v))) for v in table[col]]
    return table.astype(object).fillna("")


def curve(rec: dict[str, Any], split: str, metric: str = "AP") -> tuple[list[int], list[float]]:
    """``(epochs, metric)`` of a run's evaluated epochs on ``split``."""
    pts = [(p["epoch"], p["splits"][split][metric]) for p in rec["curve"] if split in p["splits"]]
    return [e for e, _ in pts], [v for _, v in pts]


def plot_curves(
    runs: Iterable[tuple[str, dict[str, Any]]],
    ae: dict[str, dict[str, float]] | None = None,
    splits: Sequence[str] = ("sparse", "occluded"),
    x: str = "images",
):  # -> matplotlib Figure
    """AP against the training budget (``x``: ``images`` seen or ``epoch``) per split, one line
    per run, AE's grouping as a dotted line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(splits), 3.3))
    axes = np.atleast_1d(fig.subplots(1, len(splits)))
    for ax, split in zip(axes, splits, strict=True):
        for label, rec in runs:
            ep, ap = curve(rec, split)
            xs = [e * rec["images"] for e in ep] if x == "images" else ep
            ax.plot(xs, ap, marker="o", label=label)
        if ae is not None and split in ae:
            ax.axhline(ae[split]["AP"], color="k", ls=":", label="AE grouping")
        ax.set(title=split, xlabel="training images seen" if x == "images" else "epoch",
               ylabel="AP")  # fmt: skip
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


#: The diagnosis setting that is the ``cpu`` profile's main run (experiments/diagnosis.py).
MAIN_SETTING = "cpu-main"


def setting_runs(setting: str, folder: PathLike = RESULTS) -> dict[int, dict[str, Any]]:
    """``{seed: record}`` of one setting's runs in ``folder``."""
    return setting_runs_of(load_runs(folder), setting)


def seed_spread(setting: str = MAIN_SETTING, folder: PathLike = RESULTS,
                splits: Sequence[str] = ("sparse", "occluded")) -> float:  # fmt: skip
    """The largest range of RMPP's final AP over the seeds of ``setting`` (one frozen AE),
    over ``splits``: the noise floor of the main comparison. At least two seeds are needed."""
    recs = list(setting_runs(setting, folder).values())
    if len(recs) < 2:
        raise DataError(f"{folder}: {len(recs)} seed(s) of setting {setting!r}; the spread "
                        f"needs at least 2 (python experiments/diagnosis.py run {setting} "
                        f"--seed N)")  # fmt: skip
    return max(float(np.ptp([final(r)[s]["AP"] for r in recs])) for s in splits)


def setting_ap(runs: dict[tuple[str, int], dict[str, Any]], settings: Sequence[str],
               split: str, metric: str = "AP") -> pd.DataFrame:  # fmt: skip
    """Per setting (those with a record, in the given order) the mean, low and high of
    ``metric`` on ``split`` over its seeds, and the number of seeds."""
    rows = {}
    for s in settings:
        vals = [final(r)[split][metric] for (name, _), r in sorted(runs.items())
                if name == s and split in final(r)]  # fmt: skip
        if vals:
            rows[s] = {"mean": float(np.mean(vals)), "low": min(vals), "high": max(vals),
                       "seeds": len(vals)}  # fmt: skip
    return pd.DataFrame.from_dict(rows, orient="index")


def metric_table(runs: dict[tuple[str, int], dict[str, Any]], settings: Sequence[str],
                 metric: str = "AP", ae: dict[str, dict[str, float]] | None = None,
                 splits: Sequence[str] = SPLITS) -> pd.DataFrame:  # fmt: skip
    """One metric as rows = settings (and AE's grouping) x columns = splits: the seeds' mean,
    with their range in brackets when there are several (text cells; "–" where missing)."""
    scale = 100.0 if metric == "count_exact" else 1.0
    table: dict[str, dict[str, str]] = {}
    for split in splits:
        for s, row in setting_ap(runs, settings, split, metric).iterrows():
            text = f"{row['mean'] * scale:.1f}"
            if row["seeds"] > 1:
                text += f" ({(row['high'] - row['low']) * scale:.1f})"
            table.setdefault(s, {})[split] = text
        if ae is not None and split in ae and metric in ae[split]:
            v = ae[split][metric]
            if v == v:  # NaN: AE has no such number on this split
                table.setdefault("AE grouping", {})[split] = f"{v * scale:.1f}"
    return pd.DataFrame.from_dict(table, orient="index").reindex(columns=list(splits))


def plot_settings(runs: dict[tuple[str, int], dict[str, Any]], settings: Sequence[str],
                  reference: str, spread: float, ae: dict[str, dict[str, float]] | None = None,
                  splits: Sequence[str] = ("sparse", "occluded"),
                  labels: dict[str, str] | None = None):  # -> matplotlib Figure
    """Settings against the noise (chapter 10's screening finding at a glance): per split a
    panel with one dot per setting (its seeds' mean, a bar over their range), the band
    ``reference``'s AP +- ``spread`` (the main run's seed-to-seed range: a setting inside it
    is not distinguishable from the reference) and AE's grouping as a dotted line."""
    from matplotlib.figure import Figure

    shown = [s for s in settings if any(name == s for name, _ in runs)]
    fig = Figure(figsize=(3.6 * len(splits) + 1.6, 0.32 * len(shown) + 1.2))
    axes = np.atleast_1d(fig.subplots(1, len(splits), sharey=True))
    y = np.arange(len(shown))[::-1]
    for ax, split in zip(axes, splits, strict=True):
        t = setting_ap(runs, shown, split).reindex(shown)
        ref = float(t.loc[reference, "mean"])
        ax.axvspan(ref - spread, ref + spread, color="0.85",
                   label=f"{reference} +-{spread:.1f} AP (seed range)")  # fmt: skip
        ax.axvline(ref, color="0.5", lw=0.8)
        inside = (t["mean"] - ref).abs() <= spread
        ax.errorbar(t["mean"], y, xerr=[t["mean"] - t["low"], t["high"] - t["mean"]],
                    fmt="none", ecolor="k", lw=1)  # fmt: skip
        ax.scatter(t["mean"][inside], y[inside.to_numpy()], color="0.4", zorder=3,
                   label="inside the band")  # fmt: skip
        ax.scatter(t["mean"][~inside], y[~inside.to_numpy()], color="C3", zorder=3,
                   label="outside the band")  # fmt: skip
        if ae is not None and split in ae:
            ax.axvline(ae[split]["AP"], color="k", ls=":", label="AE grouping")
        ax.set(title=split, xlabel="AP")
    axes[0].set_yticks(y, [(labels or {}).get(s, s) for s in shown], fontsize=8)
    axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_paired(runs: dict[tuple[str, int], dict[str, Any]], setting: str, reference: str,
                ae: dict[str, dict[str, float]] | None = None,
                splits: Sequence[str] = SPLITS):  # -> matplotlib Figure
    """``reference`` and ``setting`` seed by seed (the figure of :func:`paired_gain`): per split
    one line per decoder seed from its AP under ``reference`` to its AP under ``setting``
    (green where it rose, red where it fell), seeds only one of them ran as lone grey dots, AE's
    grouping of the same network dotted. Where the seeds lie wide apart, the slopes show what
    two settings' means and ranges hide."""
    from matplotlib.figure import Figure

    a, b = setting_runs_of(runs, reference), setting_runs_of(runs, setting)
    fig = Figure(figsize=(2.6 * len(splits) + 0.6, 3.2))
    axes = np.atleast_1d(fig.subplots(1, len(splits)))
    for ax, split in zip(axes, splits, strict=True):
        ends = {}
        for seed in sorted(set(a) | set(b)):
            ys = [final(r[seed])[split]["AP"] if seed in r and split in final(r[seed])
                  else np.nan for r in (a, b)]  # fmt: skip
            if np.isnan(ys).any():
                ax.scatter([0, 1], ys, color="0.6", s=12, zorder=3)
                continue
            ax.plot([0, 1], ys, marker="o", ms=4, color="C2" if ys[1] > ys[0] else "C3")
            ends[seed] = ys[1]
        for seed, y in _spaced(ends, 0.06 * np.ptp(ax.get_ylim())).items():
            ax.annotate(f"seed {seed}", (1, ends[seed]), xytext=(1.06, y), fontsize=6,
                        va="center", textcoords="data")  # fmt: skip
        if ae is not None and split in ae:
            ax.axhline(ae[split]["AP"], color="k", ls=":", label="AE grouping")
        ax.set_xticks([0, 1], [reference, setting], fontsize=8)
        ax.set(title=split, xlim=(-0.3, 1.45))
    axes[0].set_ylabel("AP, final")
    if ae is not None:
        axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _spaced(ys: dict[Any, float], gap: float) -> dict[Any, float]:
    """Label heights for points at heights ``ys``: in the same order, at least ``gap`` apart,
    each as near its point as that allows (pushed upwards from the lowest)."""
    out: dict[Any, float] = {}
    last = -np.inf
    for key, y in sorted(ys.items(), key=lambda kv: kv[1]):
        last = max(y, last + gap)
        out[key] = last
    return out


def setting_tables(runs: dict[tuple[str, int], dict[str, Any]], settings: Sequence[str],
                   ae: dict[str, dict[str, float]] | None = None,
                   splits: Sequence[str] = SPLITS):  # -> rnnpose.tables.Stack
    """The numbers behind a settings figure, each folded behind a click: what each setting
    changed and its budget, then one table per metric (rows = settings, columns = splits)."""
    from rnnpose.tables import Stack, show

    what = {}
    for s in settings:
        recs = [r for (name, _), r in sorted(runs.items()) if name == s]
        if recs:
            what[s] = {"what changed": recs[0].get("desc", s), "seeds": str(len(recs)),
                       **{k: str(v) for k, v in budget(recs[0]).items()}}  # fmt: skip
    parts = [show(pd.DataFrame.from_dict(what, orient="index"),
                  fold="What each setting changed, and its budget")]  # fmt: skip
    titles = {"AP": "AP", "AP50": "AP50", "AP75": "AP75",
              "count_exact": "exact count (% of images with as many people as annotated)"}
    for m in METRICS:
        parts.append(show(metric_table(runs, settings, m, ae=ae, splits=splits),
                          fold=f"{titles[m]} per setting and split (mean over seeds; their "
                               f"range in brackets)"))  # fmt: skip
    return Stack(*parts)


def _mean_range(vals: Sequence[float], scale: float = 1.0, unit: str = "") -> str:
    """A table cell: the mean of ``vals`` (times ``scale``), their range in brackets when there
    are several, "–" when there are none."""
    if len(vals) == 0:
        return "–"
    text = f"{np.mean(vals) * scale:.1f}{unit}"
    return text + (f" ({np.ptp(vals) * scale:.1f})" if len(vals) > 1 else "")


def loss_balance(runs: dict[tuple[str, int], dict[str, Any]], settings: Sequence[str],
                 splits: Sequence[str] = SPLITS) -> pd.DataFrame:  # fmt: skip
    """The heatmap-loss normalisation question (issue 22), one row per setting (mean over its
    seeds, their range in brackets): how far LSTM1's heatmap loss of the last epoch went from
    "empty" (0 %) to "hedge" (100 %: everyone drawn at 1/Z; below it the decoder picks
    people), in the run's own normalisation (:func:`loss_levels` of the diagnosis script);
    the stop loss per image; AP and the share of images over-counted per split."""

    cell = _mean_range
    rows = {}
    for s in settings:
        recs = [r for (name, _), r in sorted(runs.items()) if name == s]
        if not recs:
            continue
        shares = [(r["loss_levels"]["zero"] - r["log"][-1]["heatmap1"])
                  / (r["loss_levels"]["zero"] - r["loss_levels"]["hedge"])
                  for r in recs if "loss_levels" in r and r.get("log")]  # fmt: skip
        row = {"seeds": str(len(recs)), "Adam steps": str(int(recs[0]["adam_steps"])),
               "heatmap loss: empty -> hedge": cell(shares, 100.0, " %"),
               "stop loss / image": cell([r["log"][-1]["stop"] for r in recs if r.get("log")])}
        for split in splits:
            row[f"AP {split}"] = cell([final(r)[split]["AP"] for r in recs
                                       if split in final(r)])  # fmt: skip
        for split in splits:
            row[f"over-counted {split}"] = cell([final(r)[split]["count_over"] for r in recs
                                                 if split in final(r)], 100.0, " %")  # fmt: skip
        rows[s] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def paired_gain(runs: dict[tuple[str, int], dict[str, Any]], setting: str, reference: str,
                splits: Sequence[str] = SPLITS) -> pd.DataFrame:  # fmt: skip
    """``setting`` against ``reference`` seed by seed (the same decoder seed: the same
    initial weights and image order, only the setting differs), one row per split: the seeds
    both have, the mean of the per-seed differences of final AP, their smallest and largest,
    and on how many seeds ``setting`` scored higher. A difference every seed shows is a result
    even where it is smaller than the spread between seeds."""
    a, b = setting_runs_of(runs, setting), setting_runs_of(runs, reference)
    both = sorted(set(a) & set(b))
    rows = {}
    for split in splits:
        diffs = [final(a[s])[split]["AP"] - final(b[s])[split]["AP"] for s in both
                 if split in final(a[s]) and split in final(b[s])]  # fmt: skip
        if not diffs:
            continue
        rows[split] = {"seeds": len(diffs), "mean difference": float(np.mean(diffs)),
                       "smallest": min(diffs), "largest": max(diffs),
                       "seeds higher": f"{sum(d > 0 for d in diffs)} of {len(diffs)}"}
    return pd.DataFrame.from_dict(rows, orient="index")


def seed_table(runs: dict[tuple[str, int], dict[str, Any]], settings: Sequence[str],
               splits: Sequence[str] = SPLITS, metric: str = "AP") -> pd.DataFrame:  # fmt: skip
    """Every seed's final ``metric``: one row per setting and seed (``"SETTING seed N"``, in
    the given order of settings, seeds ascending), one column per split; the spread between
    two builds of one commit on one CPU model, seed by seed."""
    rows = {f"{s} seed {seed}": {sp: final(r)[sp][metric] for sp in splits if sp in final(r)}
            for s in settings for seed, r in sorted(setting_runs_of(runs, s).items())}
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=list(splits))


def setting_runs_of(runs: dict[tuple[str, int], dict[str, Any]],
                    setting: str) -> dict[int, dict[str, Any]]:  # fmt: skip
    """``{seed: record}`` of one setting among records already read (:func:`load_runs`)."""
    return {seed: r for (name, seed), r in runs.items() if name == setting}


def seeds(runs: dict[tuple[str, int], dict[str, Any]], setting: str) -> int:
    """How many seeds of ``setting`` have a record."""
    return sum(name == setting for name, _ in runs)


def cpu_models(runs: dict[tuple[str, int], dict[str, Any]]) -> list[str]:
    """The CPU models the records were made on (each figure of chapter 10 names them: the same
    commit trains to other weights on another CPU model)."""
    return sorted({str(r.get("cpu") or "unknown CPU") for r in runs.values()})


def spread_machine(setting: str = MAIN_SETTING, folder: PathLike = RESULTS) -> str:
    """Where :func:`seed_spread` was measured: ``"N seeds of SETTING on CPU"``, for the
    figures and tables that judge against it (chapter 9's bars were maybe made elsewhere)."""
    runs = setting_runs(setting, folder)
    return f"{len(runs)} seeds of {setting} on {', '.join(cpu_models(runs))}"


#: The default build's main run as a diagnosis setting (the `cpu` profile trains with the plain
#: sum since issue 22) and the campaign that ran it on >= 5 decoder seeds: its seed range, the
#: widest measured for that run on any CPU model, judges the main comparison (chapter 9).
DEFAULT_SETTING = "cpu-sum"
DEFAULT_CAMPAIGN = RESULTS / "xeon-avx512"


def default_spread() -> float:
    """The seed-to-seed spread the main comparison's verdicts are judged against: the
    largest range of :data:`DEFAULT_SETTING`'s final AP over its seeds in
    :data:`DEFAULT_CAMPAIGN` (``sparse`` or ``occluded``)."""
    return seed_spread(DEFAULT_SETTING, DEFAULT_CAMPAIGN)


def default_spread_machine() -> str:
    """Where :func:`default_spread` was measured (``"N seeds of SETTING on CPU"``)."""
    return spread_machine(DEFAULT_SETTING, DEFAULT_CAMPAIGN)


#: The diagnosis setting with the long build's decoder schedule (8 epochs, 4,800 Adam steps,
#: evaluated after every epoch: its epoch 2 is the default budget, ``cpu-main``).
LONG_SETTING = "long-main"


def ae_reference(folder: PathLike, ae_seed: int = 0) -> dict[str, dict[str, float]]:
    """AE's grouping and the same heatmaps grouped by the ground truth, AP per split, from a
    campaign's ``ae-sSEED-eval.json`` (the references of its decoder curves)."""
    name = f"ae-s{ae_seed}-eval"
    path = Path(folder) / f"{name}.json"
    splits = load(name, folder).get("splits")
    if not isinstance(splits, dict) or not splits:
        raise DataError(f"{path}: field 'splits' must map each split to AE's metrics")
    refs: dict[str, dict[str, float]] = {"AE grouping": {},
                                         "AE heatmaps, ground-truth grouping": {}}  # fmt: skip
    for split, m in splits.items():
        for key, label in (("ae", "AE grouping"), ("oracle", "AE heatmaps, ground-truth grouping")):
            ap = m.get(key, {}).get("AP") if isinstance(m, dict) else None
            if not is_number(ap):
                raise DataError(f"{path}: field 'splits.{split}.{key}.AP' must be a number")
            refs[label][split] = float(ap)
    return refs


def long_campaign(folder: PathLike = RESULTS, setting: str = LONG_SETTING,
                  ) -> tuple[pd.DataFrame, dict[str, dict[str, float]], str] | None:  # fmt: skip
    """The decoder's curve at the long budget from the diagnosis records: the folder (``folder``
    or one of its subfolders: one per CPU campaign) holding the most seeds of ``setting``, as
    ``(curve, AE references, source)`` -- the curve in :mod:`rnnpose.curves`' shape (``seed``,
    ``epoch``, ``step``, ``split``, ``AP``), the references from the same frozen AE's
    evaluation, and a source line naming the folder, the seeds and the CPU. None where no
    folder holds such a record."""
    folder = Path(folder)
    found = {f: setting_runs(setting, f) for f in [folder, *sorted(folder.glob("*/"))]
             if f.is_dir()}  # fmt: skip
    found = {f: runs for f, runs in found.items() if runs}
    if not found:
        return None
    where, runs = max(found.items(), key=lambda kv: len(kv[1]))
    ae_seeds = {int(r.get("ae_seed", 0)) for r in runs.values()}
    if len(ae_seeds) != 1:
        raise DataError(f"{where}: the {setting} records were trained on several AE networks "
                        f"(ae_seed {sorted(ae_seeds)}); a curve needs one")  # fmt: skip
    refs = ae_reference(where, ae_seeds.pop())
    try:
        rel = where.relative_to(ROOT).as_posix()
    except ValueError:
        rel = str(where)
    source = (f"the diagnosis runs `{setting}` ({len(runs)} decoder seed"
              f"{'s' * (len(runs) != 1)} on {', '.join(cpu_models(runs))}, records in `{rel}`; "
              "their own frozen AE, not this build's)")  # fmt: skip
    return setting_curve(runs), refs, source


def setting_curve(runs: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """The evaluated epochs of one setting's runs (``{seed: record}``) in
    :mod:`rnnpose.curves`' shape: one row per (seed, epoch, split) with ``step`` and ``AP``."""
    rows = [{"seed": seed, "epoch": int(p["epoch"]), "step": int(p["step"]), "split": split,
             "AP": float(m["AP"])}
            for seed, rec in sorted(runs.items()) for p in rec["curve"]
            for split, m in p["splits"].items()]  # fmt: skip
    return pd.DataFrame(rows, columns=["seed", "epoch", "step", "split", "AP"])


def long_settings(folder: PathLike, settings: Sequence[str],
                  published: tuple[pd.DataFrame, dict[str, dict[str, float]], str] | None = None,
                  label: str = f"{LONG_SETTING} (published build)",
                  ) -> tuple[dict[str, pd.DataFrame], dict[str, dict[str, float]]]:  # fmt: skip
    """The long-budget settings of one campaign (``folder``: one CPU model, one frozen AE) as
    ``({label: curve}, AE references)``. ``published`` (:func:`rnnpose.curves.published_curve`
    of a long build's snapshot) leads as ``label`` where its AE references equal the
    campaign's to 1e-6 -- the same frozen AE, so its decoder runs are this script's ``run
    long-main`` -- and is left out otherwise (another machine's network)."""
    refs = ae_reference(folder)
    runs = load_runs(folder)
    out: dict[str, pd.DataFrame] = {}
    if published is not None:
        curve, theirs, _ = published
        same = all(abs(theirs.get(k, {}).get(split, np.inf) - v) < 1e-6
                   for k, per in refs.items() for split, v in per.items()
                   if split in theirs.get("AE grouping", {}))  # fmt: skip
        if same and theirs.get("AE grouping"):
            out[label] = curve
    for s in settings:
        seeds = {seed: r for (name, seed), r in runs.items() if name == s}
        if seeds:
            out[s] = setting_curve(seeds)
    return out, refs


def at_budget(curves: dict[str, pd.DataFrame], reference: str,
              splits: Sequence[str] = ("sparse", "occluded")) -> pd.DataFrame:  # fmt: skip
    """Settings compared at the largest budget all of them reached (chapter 10, the aids at the
    long budget): per setting of ``curves`` (``{label: curve}`` in :mod:`rnnpose.curves`'
    shape) its seeds, and per split the AP at that step (mean over seeds, their range in
    brackets) and its gain: the difference of the means from ``reference``'s."""
    step = min(int(c["step"].max()) for c in curves.values())
    at = {label: c[c["step"] == step] for label, c in curves.items()}
    ref = at[reference].groupby("split")["AP"].mean()
    rows = {}
    for label, here in at.items():
        row = {"seeds": str(here["seed"].nunique()), "Adam steps": str(step)}
        for split in splits:
            aps = here.loc[here["split"] == split, "AP"]
            row[f"AP {split}"] = _mean_range(aps)
            if aps.empty:
                row[f"gain {split}"] = "–"
            else:
                gain = aps.mean() - ref.get(split, np.nan)
                row[f"gain {split}"] = "" if label == reference else f"{gain:+.1f}"
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")
