"""``rnnpose book`` (= ``make book``): execute every notebook with papermill, then render.

Each notebook in ``notebooks/`` is run with its ``parameters`` cell overridden (``profile``
and friends) into ``book/executed/``; an executed copy is reused while the notebook, the
parameters and the package source are unchanged (the key is stored in the copy's metadata).
Then ``jupyter-book build`` renders the executed copies without executing them again, with
warnings as errors. A failing notebook stops the build and names the notebook and the cell.

What the reader sees is set by Jupyter Book's cell tags: the source notebooks fold their
plotting and table-assembly code (``hide-input``), and :func:`tag_for_book` shows the
parameters once, as the chapter ran with them.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rnnpose import cli_types
from rnnpose.io import DataError, atomic_write_text

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / "book" / "executed"
RESULTS_FILE = ROOT / "_build" / "results.json"


class NotebookFailed(RuntimeError):
    """A notebook raised during execution; the message names the notebook and the cell."""


#: Files the chapters read besides the package: the diagnosis records (chapters 9 and 10) and
#: the published snapshot (every chapter head). A new record re-executes the chapters.
READ_BY_CHAPTERS = ("experiments/results/*.json", "experiments/results/*/*.json",
                    "book/published/*.json")


def code_version() -> str:
    """Hash of the package source and of the files the chapters read
    (:data:`READ_BY_CHAPTERS`): part of every executed notebook's cache key, so a cached
    rebuild never shows a chapter computed from older records."""
    h = hashlib.sha256()
    read = [p for pattern in READ_BY_CHAPTERS for p in sorted(ROOT.glob(pattern))]
    for path in sorted((ROOT / "rnnpose").rglob("*.py")) + read:
        h.update(path.relative_to(ROOT).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def notebook_paths(root: Path = NOTEBOOKS) -> list[Path]:
    return sorted(p for p in root.glob("*.ipynb") if not p.name.startswith("_"))


def normalise_kernelspec(path: Path) -> None:
    """Every notebook runs on the ``python3`` kernel (the project's venv when run from it)."""
    nb = json.loads(path.read_text())
    spec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    if nb.get("metadata", {}).get("kernelspec") != spec:
        nb.setdefault("metadata", {})["kernelspec"] = spec
        atomic_write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _key(path: Path, params: dict[str, Any], version: str) -> str:
    blob = path.read_bytes() + json.dumps(params, sort_keys=True).encode() + version.encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _rel(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def _tags(cell: dict[str, Any]) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def tag_for_book(nb: dict[str, Any]) -> dict[str, Any]:
    """Show the parameters once on the rendered page, with the values the notebook ran with.

    papermill keeps the notebook's ``parameters`` cell (its defaults) and inserts its own
    ``injected-parameters`` cell with the values passed. The first one is tagged
    ``remove-cell`` (it would show ``profile = "cpu"`` on a page built with ``tiny``); the
    injected cell stays visible. Both stay in the executed notebook. Without an injected
    cell (nothing passed) nothing changes."""
    cells = nb["cells"]
    if any("injected-parameters" in _tags(c) for c in cells):
        for cell in cells:
            tags = _tags(cell)
            if "parameters" in tags and not {"remove-cell", "injected-parameters"} & set(tags):
                cell.setdefault("metadata", {})["tags"] = [*tags, "remove-cell"]
    return nb


def _kernel_manager_class() -> type:
    """papermill's kernels over IPC (Unix sockets in Jupyter's runtime folder) instead of TCP:
    the kernel talks to nothing but this process, and ipykernel's warning "Kernel is running
    over TCP without encryption", printed once per notebook into the build log, does not
    apply (ipykernel 7 warns for every unencrypted TCP kernel)."""
    from jupyter_client.manager import AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**{"transport": "ipc", **kwargs})

    return IPCKernelManager


@contextlib.contextmanager
def shared_kernel() -> Iterator[Any]:
    """One ``python3`` kernel for several :func:`execute_notebook` calls (``kernel=``): started
    once in the repository root (with this process's environment), shut down at the end. A
    kernel start (a process, the imports of torch and the package) is then paid once, not per
    notebook; each notebook still runs top to bottom in an emptied namespace (``%reset -f``
    before it). The test suite's tiny runs of every notebook use it; ``make book`` does not."""
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name="python3", transport="ipc")  # as _kernel_manager_class
    km.start_kernel(cwd=str(ROOT))
    try:
        yield km
    finally:
        km.shutdown_kernel(now=True)


def _reset_namespace(km: Any) -> None:
    """Empty the user namespace of a running kernel (its imported modules stay loaded)."""
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        reply = kc.execute_interactive("get_ipython().run_line_magic('reset', '-f')",
                                       timeout=120, output_hook=lambda msg: None)  # fmt: skip
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"the shared kernel's namespace was not reset: {reply['content']}")
    finally:
        kc.stop_channels()


def execute_notebook(
    path: Path, out: Path, params: dict[str, Any], *, force: bool = False, version: str = "",
    kernel: Any = None,
) -> bool:
    """Run one notebook with papermill into ``out`` (atomically). Returns False if reused.

    Only the parameters the notebook's ``parameters`` cell declares are passed. ``kernel``: a
    running kernel of :func:`shared_kernel` (its namespace is emptied first); None: a fresh
    kernel for this notebook."""
    import papermill as pm

    declared = pm.inspect_notebook(str(path))
    params = {k: v for k, v in params.items() if k in declared}
    key = _key(path, params, version)
    if out.exists() and not force:
        meta = json.loads(out.read_text()).get("metadata", {}).get("rnnpose", {})
        if meta.get("key") == key:
            return False
    tmp = out.with_name(f".{out.name}.running.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    shared = {}
    if kernel is not None:
        _reset_namespace(kernel)
        shared = {"km": kernel}
    try:
        pm.execute_notebook(
            str(path), str(tmp), parameters=params, kernel_name="python3",
            cwd=str(ROOT), progress_bar=False, log_output=False,
            **(shared or {"kernel_manager_class": _kernel_manager_class()}),
        )  # fmt: skip
    except pm.PapermillExecutionError as exc:
        raise NotebookFailed(
            f"{_rel(path)}: cell {exc.exec_count} raised {exc.ename}: {exc.evalue}"
            f" (partial output kept in {_rel(tmp)})"
        ) from None
    nb = tag_for_book(json.loads(tmp.read_text()))
    nb["metadata"]["rnnpose"] = {"key": key, "params": params, "code_version": version,
                                 "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    atomic_write_text(out, json.dumps(nb, ensure_ascii=False) + "\n")
    tmp.unlink()
    return True


def execute_all(
    params: dict[str, Any], *, force: bool = False, only: list[str] | None = None
) -> dict[str, float]:
    """Execute (or reuse) every notebook; returns each one's execution seconds (for a reused
    copy, the seconds of the run that made it)."""
    version = code_version()
    seconds: dict[str, float] = {}
    for path in notebook_paths():
        if only and path.stem not in only:
            continue
        normalise_kernelspec(path)
        t0 = time.perf_counter()
        out = EXECUTED / path.name
        ran = execute_notebook(path, out, params, force=force, version=version)
        what = f"executed in {time.perf_counter() - t0:.0f} s" if ran else "unchanged, reused"
        print(f"[book] {path.name}: {what}", flush=True)
        meta = json.loads(out.read_text()).get("metadata", {}).get("rnnpose", {})
        seconds[path.stem] = float(meta.get("seconds", time.perf_counter() - t0))
    return seconds


def results_header(params: dict[str, Any], seconds: dict[str, float]) -> dict[str, Any]:
    """Where a results file's numbers come from: profile, seed, device and GPU, versions,
    commit, the training code's hash (to tell a stale snapshot) and each notebook's seconds."""
    import datetime

    import torch

    from rnnpose.config import get_profile
    from rnnpose.experiments import training_code
    from rnnpose.io import env_stamp

    device = str(params["device"])
    gpu = (torch.cuda.get_device_name(torch.device(device))
           if device.startswith("cuda") and torch.cuda.is_available() else None)  # fmt: skip
    env = env_stamp(device)
    return {"profile": get_profile(params["profile"]).to_dict(), "seed": params["seed"],
            "data_root": params["data_root"], "device": device, "gpu": gpu,
            "torch": torch.__version__, "cuda": torch.version.cuda if gpu else None,
            "commit": env["git_commit"], "training_code": training_code(),
            "cpu": env.get("cpu"), "threads": env.get("threads"),
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "stage_seconds": seconds, "total_seconds": round(sum(seconds.values()), 1),
            "env": env}  # fmt: skip


def write_build_results(params: dict[str, Any], seconds: dict[str, float],
                        path: Path = RESULTS_FILE) -> Path:  # fmt: skip
    """``_build/results.json``: every table each executed notebook recorded
    (:func:`rnnpose.results.record`), under :func:`results_header`."""
    from rnnpose.results import collect, write_results

    executed = [EXECUTED / f"{stem}.ipynb" for stem in seconds]
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_results(path, collect(executed), results_header(params, seconds))


def build_html() -> None:
    """Render with jupyter-book, warnings as errors (-W -n --keep-going)."""
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe), "build", str(ROOT), "-W", "-n", "--keep-going"]
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed (exit {result.returncode})")
    print(f"[book] HTML: {ROOT / '_build' / 'html' / 'index.html'}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from rnnpose.config import PROFILES

    parser.add_argument("--profile", default="cpu", choices=list(PROFILES))
    parser.add_argument("--data-root", default="", help="COCO/OCHuman root (profile paper)")
    parser.add_argument("--device", type=cli_types.device, default="cpu")
    parser.add_argument("--seed", type=cli_types.seed, default=0)
    parser.add_argument("--force", action="store_true", help="re-execute every notebook")
    parser.add_argument("--only", nargs="+", metavar="STEM",
                        help="notebook stems to execute (at least one)")  # fmt: skip
    parser.add_argument("--no-html", action="store_true", help="execute only")
    parser.add_argument("--publish", metavar="DIR", type=cli_types.output_folder,
                        help="also write the results file (and the stage times) to DIR as a "
                        "published snapshot; book/published takes CUDA runs only")  # fmt: skip


def check_publishable(profile: str, device: str, folder: Path | None = None) -> None:
    """``book/published`` (``folder``) takes a CUDA build, or on the CPU the long build
    (profile ``long``), and never replaces a CUDA snapshot with a CPU one (:class:`DataError`)."""
    from rnnpose.results import PUBLISHED, published

    folder = folder or PUBLISHED
    cuda = device.startswith("cuda")
    if not cuda and profile != "long":
        raise DataError(f"--publish {_rel(PUBLISHED)}: the published snapshot is a CUDA build's "
                        f"or the long CPU build's (--profile long); a {profile} {device} build "
                        "goes to another folder")  # fmt: skip
    current = published(folder)
    if not cuda and current is not None and str(current.header.get("device")).startswith("cuda"):
        raise DataError(f"--publish {_rel(PUBLISHED)}: it holds a CUDA build, which takes "
                        "precedence over a CPU build (publish this one to another folder)")


def run(args: argparse.Namespace) -> int:
    # `widgets` False: the book shows static figures (widgets do not run in static HTML)
    if args.data_root and not Path(args.data_root).is_dir():
        raise DataError(f"{args.data_root}: no such folder (--data-root)")
    unknown = sorted(set(args.only or ()) - {p.stem for p in notebook_paths()})
    if unknown:
        raise DataError(f"--only: no notebook named {', '.join(unknown)} (see notebooks/)")
    if args.publish:
        from rnnpose.results import PUBLISHED

        if Path(args.publish).resolve() == PUBLISHED.resolve():
            check_publishable(args.profile, args.device)
        if args.only:
            raise DataError("--publish: a snapshot needs every notebook (drop --only)")
    from rnnpose.experiments import check_resumable_runs

    check_resumable_runs(args.device)  # an interrupted build resumes on its own CPU model only
    params = {"profile": args.profile, "data_root": args.data_root, "device": args.device,
              "seed": args.seed, "widgets": False}  # fmt: skip
    t0 = time.perf_counter()
    try:
        seconds = execute_all(params, force=args.force, only=args.only)
    except NotebookFailed as exc:
        print(f"[book] error: {exc}", file=sys.stderr)
        return 1
    results = write_build_results(params, seconds)
    print(f"[book] results: {_rel(results)}")
    if args.publish:
        from rnnpose.results import publish

        folder = publish(results, args.publish)
        print(f"[book] published snapshot: {folder}")
    if not args.no_html:
        build_html()
    print(f"[book] done in {time.perf_counter() - t0:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = cli_types.OneLineParser(prog="python -m rnnpose.book", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except DataError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
