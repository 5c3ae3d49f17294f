"""Mutation check: break the method on purpose and watch the tests fail (issue 14).

Each mutation is a small textual patch (``old`` -> ``new``, each ``old`` found exactly once)
to one source file. For every mutation the script copies the repository (its tracked and
untracked-but-not-ignored files) to a temporary folder, applies the patch there, runs the test
files that guard that part of the method with ``pytest -x`` and reports ``caught`` (a test
failed, named) or ``SURVIVED`` (every test passed: a gap in the suite). The repository itself is
never touched. First the same test files run on the unpatched copy: a mutation only counts as
caught when they pass there.

    .venv/bin/python tests/mutations.py              # all mutations (about 10 min on 2 cores)
    .venv/bin/python tests/mutations.py --list       # names and what each breaks
    .venv/bin/python tests/mutations.py esgd_as_asgd lstm2_reset_every_chunk

Not collected by pytest (the file name does not start with ``test_``); not part of ``make
test``. The real-data samples travel with the copy (``data/samples/`` is part of the
repository).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    patches: tuple[tuple[str, str], ...]  # (old, new), applied in order
    tests: tuple[str, ...]  # pytest arguments: test files (and -k selections)
    breaks: str  # what the patch does to the method
    issue: bool = False  # named in issue 14 or 20: must be caught


ALG, LOSS, ORD, DEC = ("rnnpose/algorithm1.py", "rnnpose/losses/rmpp.py",
                       "rnnpose/orderings.py", "rnnpose/decode.py")  # fmt: skip
T_ALG, T_ORD, T_LOSS, T_DEC = ("tests/test_algorithm1.py", "tests/test_orderings.py",
                               "tests/test_rmpp_loss.py", "tests/test_decode.py")  # fmt: skip
T_SWITCH = ("tests/test_train_rmpp.py", "-k", "switches")
T_PRED = ("tests/test_predict.py",)

MUTATIONS: tuple[Mutation, ...] = (
    # ---- named in issue 14
    Mutation("esgd_as_asgd", ALG, (
        ('return last or (cfg.sgd == "approx" and (p < cfg.omega or t % cfg.T == 0))',
         "return last or (p < cfg.omega or t % cfg.T == 0)"),
    ), (T_ALG,), "E-SGD closes chunks every T iterations like A-SGD", issue=True),
    Mutation("lstm2_reset_every_chunk", ALG, (
        ("out, s2 = model.lstm2.sequence(feat, matched[perm], s2)",
         "out, s2 = model.lstm2.sequence(feat, matched[perm], None)"),
        ("[s2[b] for b in seq_images]", "[None for b in seq_images]"),
    ), (T_ALG,), "LSTM2's hidden state cleared at every chunk (literal AND batched step)",
        issue=True),  # fmt: skip
    Mutation("random_is_identity", ORD, (
        ("return torch.randperm(z, generator=generator)", "return torch.arange(z)"),
    ), (T_ORD,), "ordering 'random' returns LSTM1's order", issue=True),
    Mutation("canonical_is_confidence", ORD, (
        ("flat = heatmaps.detach().sum(1).flatten(1).argmax(1).cpu()  # y * W + x",
         "flat = -probs.detach().cpu().double()"),
    ), (T_ORD,), "ordering 'canonical' sorts by p_t (the confidence order)", issue=True),
    # ---- Algorithm 1 (section 3.2.1)
    Mutation("T_ignored", ALG, (
        ("(p < cfg.omega or t % cfg.T == 0)", "(p < cfg.omega)"),
    ), (T_ALG,), "A-SGD never closes a chunk after T iterations"),
    Mutation("gt_not_removed", ALG, (
        ("remaining = remaining[keep]  # line 17", "remaining = remaining  # line 17"),
        ("remaining[b] = remaining[b][keep]", "remaining[b] = remaining[b]"),
    ), (T_ALG,), "assigned GT stay in the list for later chunks (line 17 dropped)"),
    Mutation("lstm1_state_cleared_at_chunk", ALG, (
        ("s1, s2 = detach_states(s1), detach_states(s2)", "s1, s2 = None, detach_states(s2)"),
    ), (T_ALG,), "literal step: LSTM1's hidden state cleared, not detached, at a chunk end"),
    Mutation("ordering_ignored_in_training", ALG, (
        ("perm = order(cfg.ordering, matched, probs, _order_generator(seed, chunks))",
         'perm = order("learned", matched, probs, _order_generator(seed, chunks))'),
        ("perm = order(cfg.ordering, matched,", 'perm = order("learned", matched,'),
    ), (T_ALG,), "training feeds LSTM2 in LSTM1's order whatever the ordering switch"),
    Mutation("lstm2_target_not_permuted", ALG, (
        ("hm2 = heatmap_loss(out, target[perm], cfg.scale)",
         "hm2 = heatmap_loss(out, target, cfg.scale)"),
        ("seq_targets.append(target[perm])", "seq_targets.append(target)"),
    ), (T_ALG,), "LSTM2's input is permuted but its GT is not (eq. 4)"),
    Mutation("loss_config_not_passed", ALG, (
        ("omega=cfg.omega, scale=cfg.scale, config=cfg.loss_config,",
         "omega=cfg.omega, scale=cfg.scale,"),
    ), (T_ALG,), "literal step always uses (a, a')"),
    # ---- losses (section 3.2, 4.2)
    Mutation("config_b_as_a", LOSS, (
        ('keep_under = torch.ones_like(under) if config[0] == "b" else confident',
         "keep_under = confident"),
    ), (T_LOSS, T_ALG), "(b) behaves as (a): low-p predictions t <= z never matched"),
    Mutation("config_bprime_as_aprime", LOSS, (
        ('keep_over = confident if config[1] == "b" else torch.zeros_like(under)',
         "keep_over = torch.zeros_like(under)"),
    ), (T_LOSS, T_ALG), "(b') behaves as (a'): predictions t > z never matched"),
    Mutation("heatmap_loss_low_precision_sum", LOSS, (
        ("        pred = pred.float()\n", "        pred = pred\n"),
    ), (T_LOSS,), "fp16/bf16 heatmaps summed in their own precision"),
    Mutation("heatmap_loss_empty_not_differentiable", LOSS, (
        ("return pred.sum() * 0.0", "return torch.zeros(())"),
    ), (T_LOSS,), "nothing matched: a constant zero without a graph"),
    # ---- orderings (table 3)
    Mutation("confidence_ascending", ORD, (
        ("torch.sort(-probs.detach().cpu().double(), stable=True)",
         "torch.sort(probs.detach().cpu().double(), stable=True)"),
    ), (T_ORD,), "ordering 'confidence' sorts p_t ascending"),
    Mutation("canonical_first_joint_only", ORD, (
        ("heatmaps.detach().sum(1).flatten(1)", "heatmaps.detach()[:, 0].flatten(1)"),
    ), (T_ORD,), "'canonical' locates a person by joint 0's peak, not the summed maps"),
    # ---- models (section 3.1.1)
    Mutation("loop_ignored", "rnnpose/models/rmpp.py", (
        ("return max(1, self.loop)", "return 1"),
    ), (T_ALG, "tests/test_rmpp_model.py"), "one pass per person whatever loop says"),
    Mutation("loop_feeds_init_again", "rnnpose/models/rmpp.py", (
        ("hm, logit, states = self.step(feat, hm, states)",
         "hm, logit, states = self.step(feat, init, states)"),
    ), (T_ALG, "tests/test_rmpp_model.py"), "each pass reads the U[0, 0.1] maps, not its output"),
    # ---- decoding (section 3.2)
    Mutation("decode_reindex_by_count", DEC, (
        ("state = [(h.index_select(0, idx), c.index_select(0, idx)) for h, c in state]",
         "state = [(h[: len(keep)], c[: len(keep)]) for h, c in state]"),
    ), (T_DEC,), "after a stop, the first rows of the state are kept, not the running images'"),
    Mutation("decode_omega_fixed", DEC, (
        ("if p[r] >= omega:", "if p[r] >= 0.2689414213699951:"),
    ), (T_DEC,), "decode ignores its omega argument (always sigmoid(-1))"),
    Mutation("p_stop_is_omega", DEC, (
        ("stop_p[b] = p[r]", "stop_p[b] = omega"),
    ), (T_DEC,), "p_stop reports omega instead of the p_t that stopped"),
    Mutation("half_pixel_shift_to_original", DEC, (
        ("xy = apply_affine(kps[k, :, :2] * stride, inv)",
         "xy = apply_affine(kps[k, :, :2] * stride + stride / 2, inv)"),
    ), (T_DEC,), "heatmap -> original pixels with a half-cell shift"),
    Mutation("predict_drops_every_person", DEC, (
        ("        if not kept.any():\n            continue",
         "        if True:\n            continue"),
    ), T_PRED, "RMPP results are always empty"),
    # ---- training options (section 4)
    Mutation("loop_option_dropped", "rnnpose/train/rmpp.py", (
        ('"loop": "loop", ', ""),
    ), T_SWITCH, "--loop does not reach the model"),
    Mutation("sgd_option_dropped", "rnnpose/train/rmpp.py", (
        ('cfg = StepConfig.from_profile(profile, sgd=opts["sgd"],',
         'cfg = StepConfig.from_profile(profile, sgd="approx",'),
    ), T_SWITCH, "--sgd exact trains with A-SGD"),
    Mutation("use_lstm2_option_dropped", "rnnpose/train/rmpp.py", (
        ('model = RMPP(profile, use_lstm2=bool(opts["use_lstm2"]))',
         "model = RMPP(profile, use_lstm2=True)"),
    ), T_SWITCH, "--no-lstm2 still trains LSTM2"),
    # ---- prediction and evaluation
    Mutation("method_option_ignored", "rnnpose/predict.py", (
        ('self.method = method or "rmpp"', 'self.method = "rmpp"'),
    ), T_PRED, "an RMPP run predicts with RMPP even when asked for --method ae"),
    Mutation("non_finite_results_accepted", "rnnpose/evaluate.py", (
        ('if not np.isfinite(kp).all() or not np.isfinite(float(r["score"])):', "if False:"),
    ), ("tests/test_evaluate.py",), "results with NaN/inf keypoints or scores evaluated"),
    # ---- checkpoints
    Mutation("python_numpy_rng_not_restored", "rnnpose/checkpoint.py", (
        ("    random.setstate((py[0], tuple(py[1]), py[2]))\n", ""),
        ("    np.random.set_state((npst[0], npst[1].numpy().astype(np.uint32), *npst[2:]))"
         "  # noqa: NPY002\n", ""),
    ), ("tests/test_foundation.py",), "resume restores torch's RNG only"),
    Mutation("checkpoint_fields_unchecked", "rnnpose/checkpoint.py", (
        ('for key in ("model", "config", "epoch", "step"):', 'for key in ("model",):'),
    ), ("tests/test_foundation.py",), "a checkpoint without config/epoch/step loads"),
    Mutation("optimizer_state_shape_unchecked", "rnnpose/checkpoint.py", (
        ("if torch.is_tensor(value) and value.dim() > 0 and value.shape != p.shape:",
         "if False:"),
    ), ("tests/test_foundation.py",), "optimiser state shaped unlike the parameters loads"),
    # ---- named in issue 20 (every test survived them before)
    Mutation("decode_stops_at_omega", DEC, (
        ("if p[r] >= omega:", "if p[r] > omega:"),
    ), (T_DEC,), "decoding also stops at p_t == omega (>= became >)", issue=True),
    Mutation("tag_threshold_inclusive", "rnnpose/grouping.py", (
        ("if c < n_old and dist[r, c] < tag_threshold:",
         "if c < n_old and dist[r, c] <= tag_threshold:"),
    ), ("tests/test_grouping.py",), "AE grouping joins a candidate at distance == threshold",
        issue=True),  # fmt: skip
    Mutation("larger_gain_within_spread_decided", "rnnpose/paper.py", (
        ('larger = ("inconclusive" if abs(diff) < spread and g["OCHuman"] > -spread else',
         'larger = ("inconclusive" if False else'),
    ), ("tests/test_paper.py",), "'larger gain on OCHuman' decided inside the spread",
        issue=True),  # fmt: skip
    Mutation("record_drops_numbers", "rnnpose/results.py", (
        ('{"name": name, "numbers": frame_to_json(numbers),',
         '{"name": name, "numbers": frame_to_json(numbers.iloc[:0]),'),
    ), ("tests/test_results.py",), "record() hands the build a table without its rows",
        issue=True),  # fmt: skip
    Mutation("record_drops_verdicts", "rnnpose/results.py", (
        ('payload["verdicts"] = _clean(verdicts.reset_index().to_dict(orient="records"))',
         "pass"),
    ), ("tests/test_results.py",), "record() drops the table's verdicts", issue=True),
    Mutation("batched_detaches_nobody", ALG, (
        ("s1 = [(torch.where(mask, h.detach(), h), torch.where(mask, c.detach(), c))",
         "s1 = [(h, c)"),
    ), (T_ALG,), "batched step: an image closing a chunk while another runs on keeps its "
        "LSTM1 graph", issue=True),  # fmt: skip
    Mutation("last_pt_alone_is_no_run", "rnnpose/train/common.py", (
        ('RUN_FILES: tuple[str, ...] = ("config.json", "last.pt", "log.jsonl")',
         'RUN_FILES: tuple[str, ...] = ("config.json", "log.jsonl")'),
    ), ("tests/test_bad_input.py", "-k", "last-only"),
        "a folder holding only last.pt counts as holding no run", issue=True),  # fmt: skip
    Mutation("resume_keeps_a_stale_log", "rnnpose/train/common.py", (
        ("        if isinstance(records, list) and records != self.read_log():",
         "        if False:"),
    ), ("tests/test_long_build.py", "-k", "log_agree"),
        "a resume keeps a log that disagrees with its checkpoint (issue 22)"),  # fmt: skip
    Mutation("shared_kernel_keeps_namespace", "rnnpose/book.py", (
        ("        _reset_namespace(kernel)\n", ""),
    ), ("tests/test_notebooks.py", "-k", "shared_kernel"),
        "the notebook tests' shared kernel carries one notebook's variables into the next"),
)


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True).stdout


def source_files(root: Path) -> list[str]:
    """Tracked plus untracked-not-ignored files (what a commit of the working tree holds)."""
    out = git("ls-files", "-co", "--exclude-standard").decode()
    return [f for f in out.splitlines() if (root / f).is_file()]


def make_copy(dest: Path, files: list[str], tests_from: str | None = None) -> Path:
    """The repository's files under ``dest/repo``; with ``tests_from`` (a git revision) its
    ``tests/`` folder is replaced by that revision's (to see what an older suite misses)."""
    repo = dest / "repo"
    for f in files:
        target = repo / f
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, target)
    if tests_from is not None:
        shutil.rmtree(repo / "tests")
        for f in git("ls-tree", "-r", "--name-only", tests_from, "tests").decode().splitlines():
            (repo / f).parent.mkdir(parents=True, exist_ok=True)
            (repo / f).write_bytes(git("show", f"{tests_from}:{f}"))
    return repo


def apply(repo: Path, m: Mutation) -> None:
    path = repo / m.file
    text = path.read_text()
    for old, new in m.patches:
        n = text.count(old)
        if n != 1:
            raise SystemExit(f"mutation {m.name}: {m.file} holds {n} copies of {old!r} "
                             "(the source changed: update the mutation)")  # fmt: skip
        text = text.replace(old, new)
    path.write_text(text)


def run_tests(repo: Path, tests: tuple[str, ...]) -> tuple[int, str, float]:
    env = {**os.environ, "PYTHONPATH": str(repo), "RNNPOSE_QUIET": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", *tests]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0


def status(r: dict) -> str:
    """caught: a test failed; SURVIVED: every test that ran passed (or none ran)."""
    if r["rc"] == 1:
        return "caught"
    if r["rc"] == 5:
        return "SURVIVED (no test selected)"
    if r["rc"] != 0:
        return f"error (rc {r['rc']})"
    summary = [ln for ln in r["output"].splitlines() if " passed" in ln or " skipped" in ln]
    passed = re.search(r"(\d+) passed", summary[-1]) if summary else None
    return "SURVIVED" if passed else "SURVIVED (all skipped)"


def first_failure(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("FAILED "):
            return line.split()[1].split("::", 1)[-1]
    tail = [ln for ln in output.splitlines() if ln.strip()][-1:]
    return tail[0][:60] if tail else "?"


def check(m: Mutation | None, files: list[str], tests: tuple[str, ...], args: Any) -> dict:
    with tempfile.TemporaryDirectory(prefix="rnnpose-mut-") as tmp:
        repo = make_copy(Path(tmp), files, args.tests_from)
        tests = tuple(t for t in tests if not t.endswith(".py") or (repo / t).is_file())
        if m is not None:
            apply(repo, m)
        rc, output, secs = run_tests(repo, tests)
    return {"rc": rc, "output": output, "secs": secs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("-j", "--jobs", type=int, default=1, help="mutations run at once")
    parser.add_argument("--tests-from", metavar="REV",
                        help="run the tests of this git revision (e.g. main) instead")  # fmt: skip
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the run of the test files on the unpatched copy")  # fmt: skip
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not args.names or m.name in args.names]
    unknown = set(args.names) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:38s} {m.file:24s} {m.breaks}{'  [issue]' if m.issue else ''}")
        return 0
    files = source_files(ROOT)
    with tempfile.TemporaryDirectory(prefix="rnnpose-mut-") as tmp:  # the copy imports itself
        repo = make_copy(Path(tmp), files)
        env = {**os.environ, "PYTHONPATH": str(repo)}
        probe = [sys.executable, "-c", "import rnnpose; print(rnnpose.__file__)"]
        where = subprocess.run(probe, cwd=repo, env=env, capture_output=True,
                               text=True).stdout.strip()  # fmt: skip
        if not where.startswith(str(repo)):
            raise SystemExit(f"the copy imports rnnpose from {where!r}, not from itself")
    all_tests: list[str] = []
    for m in chosen:
        for t in m.tests:
            if t.endswith(".py") and t not in all_tests:
                all_tests.append(t)
    if not args.no_baseline:
        base = check(None, files, tuple(all_tests), args)
        print(f"baseline (unpatched copy): {' '.join(all_tests)}: rc {base['rc']} "
              f"({base['secs']:.0f} s)", flush=True)  # fmt: skip
        if base["rc"] != 0:
            print(base["output"][-3000:])
            raise SystemExit("the guarding tests fail without any mutation: fix that first")
    def one(m: Mutation) -> tuple[Mutation, dict]:
        r = check(m, files, m.tests, args)
        print(f"  {m.name}: {status(r)} ({r['secs']:.0f} s)", file=sys.stderr, flush=True)
        return m, r

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, chosen))
    rows = []
    for m, r in results:
        by = first_failure(r["output"]) if r["rc"] != 0 else ""
        tests = " ".join(re.sub(r"^tests/", "", t) for t in m.tests)
        rows.append((m.name + (" *" if m.issue else ""), tests, status(r), by, f"{r['secs']:.0f}"))
    head = ("mutation (* = issue 14/20)", "tests run", "result", "first failing test", "s")
    widths = [max(len(str(row[k])) for row in [head, *rows]) for k in range(len(head))]
    for row in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    survived = [m.name for m, r in results if status(r) != "caught"]
    print(f"\n{len(results) - len(survived)} of {len(results)} mutations caught"
          + (f"; not caught: {', '.join(survived)}" if survived else ""))  # fmt: skip
    missed_issue = [m.name for m, r in results if m.issue and status(r) != "caught"]
    return 1 if missed_issue else 0


if __name__ == "__main__":
    sys.exit(main())
