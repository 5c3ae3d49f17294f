"""Check in a real (headless) Chromium what a reader and a JupyterLab user see.

Two checks, each saving PNG screenshots:

``lab``
    Starts ``make lab`` in ``--repo`` (a fresh clone: the first call creates its ``.venv``)
    on a fixed port and token, opens ``notebooks/03_recurrent_decoder.ipynb``, sets
    ``profile = "tiny"`` in its parameters cell by typing, as a user would, runs all cells
    (the tiny models train into the clone's ``artifacts/``), then moves the iteration slider
    one step with the keyboard and checks that the readout and the figure under it changed.
    Screenshots: ``lab-before.png``, ``lab-after.png``. The server is stopped at the end.

``book``
    Opens a chapter of the built book (``make book`` wrote ``_build/html``), checks that the
    parameters show once (papermill's injected cell, the values the chapter ran with) and
    that some code is folded behind a click, and saves a full-page screenshot.

Needs Playwright's Python package and a Chromium on disk, never a downloaded browser (do not
run ``playwright install``)::

    apt-get install -y chromium
    pip install -e ".[browser]"          # or playwright into any scratch venv
    python tools/browser_check.py lab --repo /tmp/lab-clone --out shots/
    python tools/browser_check.py book --page _build/html/book/executed/09_results.html \\
        --out shots/09_results.png

Exit status 0 when every check holds, 1 with the failing check on stderr otherwise. Not part
of ``make test`` (it needs a browser and minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


class CheckFailed(RuntimeError):
    """What the browser showed is not what it should."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)
    print(f"[ok] {message}", flush=True)


@contextmanager
def browser_page(
    chromium: str, width: int = 1400, height: int = 1000, timeout_s: float = 300
) -> Iterator:
    """A page in a headless Chromium with a fresh profile (``--user-data-dir``)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile, executable_path=chromium, headless=True, args=CHROMIUM_ARGS,
                viewport={"width": width, "height": height},
            )  # fmt: skip
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(timeout_s * 1000)  # loaded machines: minutes
                yield page
            finally:
                context.close()


@contextmanager
def lab_server(repo: Path, port: int, token: str, wait_s: float, log_path: Path) -> Iterator[str]:
    """``make lab`` headless on ``port``; yields the base URL once the server answers."""
    # a fresh user's settings and workspace; no autosave, so the clone's notebook stays as
    # it is; no news prompt over the page
    fresh = Path(tempfile.mkdtemp(prefix="lab-user-"))
    for plugin, setting in [
        ("docmanager-extension/plugin", '{"autosave": false}'),
        ("apputils-extension/notification", '{"fetchNews": "false"}'),
    ]:
        path = fresh / "settings" / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(setting)
    args = (f"--no-browser --port={port} --ServerApp.port_retries=0 --ServerApp.ip=127.0.0.1"
            f" --IdentityProvider.token={token} --LabApp.user_settings_dir={fresh}/settings"
            f" --LabApp.workspaces_dir={fresh}/workspaces")  # fmt: skip
    if os.geteuid() == 0:  # containers: Jupyter refuses root without being told
        args += " --allow-root"
    log = open(log_path, "w")
    proc = subprocess.Popen(["make", "lab", f"LAB_ARGS={args}"], cwd=repo, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait_s
        while True:
            if proc.poll() is not None:
                raise CheckFailed(f"`make lab` exited with {proc.returncode}: see {log.name}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise CheckFailed(f"no server on port {port} after {wait_s:.0f} s") from None
                time.sleep(2)
        print(f"[lab] server up at {base} (log: {log.name})", flush=True)
        yield base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the group `make lab` leads, nothing else
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()
        shutil.rmtree(fresh, ignore_errors=True)


def wait_until_idle(page, timeout_s: float) -> None:
    """Every code cell has run: no ``[*]`` prompt, each prompt numbered."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
        if prompts and all(re.search(r"\[\d+\]", p) for p in prompts):
            return
        page.wait_for_timeout(2000)
    raise CheckFailed(f"cells still running after {timeout_s:.0f} s")


def set_parameter(page, name: str, value: str) -> None:
    """Replace the line ``name = ...`` of the parameters cell by typing, as a user would."""
    line = page.locator(".jp-CodeCell .cm-line", has_text=re.compile(rf"^{name} = ")).first
    line.click()
    page.keyboard.press("End")
    page.keyboard.press("Shift+Home")
    page.keyboard.type(f"{name} = {value}")
    page.keyboard.press("Escape")  # command mode: no stray keys reach the editor
    text = line.inner_text()
    check(text == f"{name} = {value}", f"parameters cell now reads `{text}`")


def run_all(page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def lab_check(args: argparse.Namespace) -> None:
    repo, out = args.repo.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    log = out / "lab-server.log"
    with lab_server(repo, args.port, token, args.server_wait, log) as base, \
            browser_page(args.chromium) as page:  # fmt: skip
        try:
            drive_lab(page, f"{base}/lab/tree/{args.notebook}?token={token}", args, out)
        except Exception:
            page.screenshot(path=str(out / "lab-failure.png"))
            (out / "lab-failure.html").write_text(page.content())
            print(f"[lab] failure: page saved as {out / 'lab-failure.png'} and .html")
            raise


def drive_lab(page, url: str, args: argparse.Namespace, out: Path) -> None:
    """Open the notebook, set the profile, run all, move the slider (see the docstring)."""
    page.goto(url)
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    # a kernel the notebook names but the server lacks opens a "Select Kernel" dialog
    idle = page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"\| Idle"))
    page.locator(".jp-Dialog").or_(idle).first.wait_for()
    check(page.locator(".jp-Dialog").count() == 0, "no kernel dialog: the kernel starts")
    # a missing kernel may also be replaced silently by the default one: compare the names
    spec = json.loads((args.repo / "notebooks" / args.notebook).read_text())["metadata"]
    wanted = spec["kernelspec"]["display_name"]
    shown = page.locator(".jp-KernelName").first.inner_text().strip()
    check(shown == wanted, f"the notebook's own kernel runs: {shown!r}")
    set_parameter(page, "profile", f'"{args.profile}"')
    run_all(page)
    t0 = time.monotonic()
    wait_until_idle(page, args.run_timeout)
    print(f"[lab] all cells ran in {time.monotonic() - t0:.0f} s", flush=True)
    errors = page.locator(".jp-OutputArea-output[data-mime-type*='error']").count()
    check(errors == 0, "no cell raised")

    slider = page.locator(".widget-slider").first
    slider.wait_for()
    widget = page.locator(".jupyter-widgets.widget-vbox").last
    widget.scroll_into_view_if_needed()
    readout = slider.locator(".widget-readout")
    image = widget.locator(".widget-output img").first
    image.wait_for()
    before_value, before_src = readout.inner_text().strip(), image.get_attribute("src")
    check(before_value == "1", f"slider renders, at t = {before_value}")
    page.screenshot(path=str(out / "lab-before.png"))

    slider.locator(".noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "([el, src]) => { const i = el.querySelector('.widget-output img');"
        " return i && i.getAttribute('src') !== src; }",
        arg=[widget.element_handle(), before_src],
    )  # fmt: skip
    after_value = readout.inner_text().strip()
    now = slider.locator(".noUi-handle").first.get_attribute("aria-valuenow")
    moved = after_value == "2" and float(now) == 2
    check(moved, f"slider moved with the keyboard: t = {after_value}")
    check(image.get_attribute("src") != before_src, "the output panel shows a new figure")
    page.wait_for_timeout(500)
    page.screenshot(path=str(out / "lab-after.png"))
    print(f"[lab] screenshots: {out / 'lab-before.png'}, {out / 'lab-after.png'}")


def book_check(args: argparse.Namespace) -> None:
    page_path = args.page.resolve()
    check(page_path.is_file(), f"{page_path} exists (run `make book` first)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with browser_page(args.chromium, width=1300, height=900) as page:
        page.goto(page_path.as_uri())
        page.wait_for_load_state("load")
        # visible code cells that set the profile: papermill's injected cell only
        shown = [t for t in page.locator(".cell_input").all_inner_texts()
                 if re.search(r"^profile = ", t, re.M)]  # fmt: skip
        check(len(shown) == 1, f"the parameters show once: {shown!r}")
        check("# Parameters" in shown[0], "they are papermill's: the values the chapter ran with")
        folded = page.locator("details.hide.above-input").count()
        check(folded > 0, f"{folded} cells fold their code behind a click")
        page.screenshot(path=str(args.out), full_page=True)
        print(f"[book] screenshot: {args.out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="browser executable")
    sub = parser.add_subparsers(dest="what", required=True)
    lab = sub.add_parser("lab", help="make lab, run notebook 03, move its slider")
    lab.add_argument("--repo", type=Path, default=Path("."), help="clone to run `make lab` in")
    lab.add_argument("--out", type=Path, required=True, help="folder for the screenshots")
    lab.add_argument("--port", type=int, default=8899)
    lab.add_argument("--notebook", default="03_recurrent_decoder.ipynb")
    lab.add_argument("--profile", default="tiny")
    lab.add_argument("--server-wait", type=float, default=900, help="s (venv set-up incl.)")
    lab.add_argument("--run-timeout", type=float, default=1800, help="s for all cells")
    book = sub.add_parser("book", help="screenshot of a built chapter")
    book.add_argument("--page", type=Path, required=True, help="a chapter's .html")
    book.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    try:
        (lab_check if args.what == "lab" else book_check)(args)
    except CheckFailed as exc:
        print(f"browser_check {args.what}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
