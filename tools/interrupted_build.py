"""Kill a book build mid-training, start it again, and compare its numbers with an
uninterrupted build's (issue 22: a build that a session's end or a laptop lid stops must
pick up where it stopped and end with the same numbers).

Run from the repository root (it uses ``book/executed`` and ``_build`` there, and a cache
folder of its own for each build, through ``RNNPOSE_ARTIFACTS``)::

    python tools/interrupted_build.py --profile tiny --work /tmp/interrupted

1. an uninterrupted build (cache ``WORK/whole``); its ``_build/results.json`` is kept;
2. a build with a fresh cache (``WORK/killed``), killed (SIGKILL, the whole process group:
   papermill's kernel and the processes sharing a batch die with it) as soon as the first
   epoch of the decoder's main run is checkpointed; then the same command again;
   (the executed notebooks of step 1 are removed first: a killed build has none past the
   kill, and the restart must execute the notebook it was killed in, resuming its run);
3. the two results files compared table by table (numbers and verdicts; the headers differ
   in times and dates). Exit 0 when every table is equal, 1 otherwise (the differing tables
   named). The executed notebooks of step 2 replace those of step 1 in ``book/executed``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "_build" / "results.json"
EXECUTED = ROOT / "book" / "executed"


def build(profile: str, cache: Path, kill_when: str = "", force: bool = True) -> int | None:
    """One ``python -m rnnpose.book --no-html`` run on ``cache`` (``force``: every notebook
    executed again; the executed copies' keys do not name the cache); with ``kill_when`` (a
    glob under the cache), killed once a file matches. Returns the exit status (None if
    killed)."""
    env = {**os.environ, "RNNPOSE_ARTIFACTS": str(cache)}
    cmd = [sys.executable, "-m", "rnnpose.book", "--profile", profile, "--no-html"]
    cmd += ["--force"] if force else []
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
    while proc.poll() is None:
        if kill_when and list(cache.glob(kill_when)):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            print(f"[interrupted] killed the build at {kill_when} ({time.strftime('%X')})")
            return None
        time.sleep(0.05)
    return proc.returncode


def tables(path: Path) -> dict:
    return json.loads(path.read_text())["tables"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="tiny")
    p.add_argument("--work", type=Path, required=True, help="a folder for the two caches")
    args = p.parse_args(argv)
    if args.work.exists() and any(args.work.iterdir()):
        print(f"{args.work}: not empty (--work must be a new folder)", file=sys.stderr)
        return 2
    whole, killed = args.work / "whole", args.work / "killed"
    t0 = time.perf_counter()
    if build(args.profile, whole) != 0:
        print("[interrupted] the uninterrupted build failed", file=sys.stderr)
        return 1
    shutil.copy(RESULTS, args.work / "whole.json")
    # A user's killed build has no executed copy of the notebooks it had not finished; the
    # whole build's copies (their keys do not name the cache) would otherwise be reused by
    # the restart, which would then resume nothing
    for nb in EXECUTED.glob("*.ipynb"):
        nb.unlink()
    t1 = time.perf_counter()
    if build(args.profile, killed, kill_when="runs/rmpp-*/epoch_001.pt") is not None:
        print("[interrupted] the build ended before the decoder's first epoch", file=sys.stderr)
        return 1
    if build(args.profile, killed, force=False) != 0:  # started again, as a user would
        print("[interrupted] the restarted build failed", file=sys.stderr)
        return 1
    if not list(killed.glob("runs/rmpp-*/epoch_002.pt")):  # killed at epoch 1: none before
        print("[interrupted] the restarted build did not train on from the killed run",
              file=sys.stderr)  # fmt: skip
        return 1
    shutil.copy(RESULTS, args.work / "killed.json")
    a, b = tables(args.work / "whole.json"), tables(args.work / "killed.json")
    differ = sorted(n for n in set(a) | set(b)
                    if {k: v for k, v in a.get(n, {}).items() if k != "notebook"}
                    != {k: v for k, v in b.get(n, {}).items() if k != "notebook"})  # fmt: skip
    print(f"[interrupted] uninterrupted build {t1 - t0:.0f} s; killed + restarted "
          f"{time.perf_counter() - t1:.0f} s; {len(a)} tables compared")
    if differ:
        print(f"[interrupted] tables that differ: {', '.join(differ)}", file=sys.stderr)
        return 1
    print("[interrupted] every table equal")
    return 0


if __name__ == "__main__":
    sys.exit(main())
