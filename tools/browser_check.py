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
    Opens every page of the built book (``make book`` wrote ``_build/html``; the pages of
    ``_toc.yml``) in a 1300 x 900 window and fails when a table is wider than its container
    (its ``scrollWidth`` exceeds the container's ``clientWidth``: a horizontal scrollbar or a
    cut-off column), when the page itself scrolls sideways, or when "NaN" shows anywhere on
    the page (folded cells opened first), or when Markdown shows raw outside the code cells
    (``**Bold``: a glued paste rendered as a code block). On every executed chapter it also
    checks that the parameters show once (papermill's injected cell, the values the chapter
    ran with) and that some code is folded behind a click. ``--shots DIR`` saves a screenshot
    of the top of each page (``--full-page``: the whole page).

Needs Playwright's Python package and a Chromium on disk, never a downloaded browser (do not
run ``playwright install``)::

    apt-get install -y chromium
    pip install -e ".[browser]"          # or playwright into any scratch venv
    python tools/browser_check.py lab --repo /tmp/lab-clone --out shots/
    python tools/browser_check.py book --html _build/html --shots shots/

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


#: For every table on the page: its width against its container's (the nearest block ancestor
#: that clips or scrolls, else its parent), and the first header cells to name it.
TABLE_WIDTHS = """() => [...document.querySelectorAll('main table')].map((t, k) => {
  let box = t.parentElement;
  for (let e = t.parentElement; e && e.tagName !== 'MAIN'; e = e.parentElement) {
    const o = getComputedStyle(e).overflowX;
    if (o === 'auto' || o === 'scroll' || o === 'hidden') { box = e; break; }
  }
  const head = [...t.querySelectorAll('th')].slice(0, 4).map(h => h.innerText.trim());
  return {k, table: t.scrollWidth, box: box.clientWidth, boxScroll: box.scrollWidth,
          head: head.join(' | ')};
})"""


#: The page's text without the notebooks' code cells (where ``**kwargs`` is Python).
PROSE = """() => { const m = document.querySelector('main').cloneNode(true);
  m.querySelectorAll('.cell_input').forEach(e => e.remove()); return m.innerText; }"""


def book_pages(html: Path, toc: Path) -> list[Path]:
    """The pages of ``_toc.yml`` (root first) as built HTML files."""
    import yaml

    spec = yaml.safe_load(toc.read_text())
    files = [spec["root"]] + [c["file"] for part in spec.get("parts", [])
                              for c in part.get("chapters", [])]  # fmt: skip
    return [html / f"{f}.html" for f in files]


def check_page(page, path: Path) -> list[str]:
    """Every failure of one page (an empty list: it passes)."""
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    problems = []
    for t in page.evaluate(TABLE_WIDTHS):
        if t["table"] > t["box"] + 1 or t["boxScroll"] > t["box"] + 1:
            problems.append(f"table {t['k']} ({t['head'][:60]}) is {t['table']} px wide in a "
                            f"{t['box']} px container")  # fmt: skip
    page_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    if page_width[0] > page_width[1]:
        problems.append(f"the page scrolls sideways ({page_width[0]} > {page_width[1]} px)")
    # open every fold, then look for NaN in what a reader can see
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    text = page.locator("main").inner_text()
    nan = [m.group(0) for m in re.finditer(r".{0,30}\bNaN\b.{0,30}", text)]
    if nan:
        problems.append(f"{len(nan)} visible NaN, e.g. {nan[0]!r}")
    # Markdown that was pasted as text (a glue rendered as a code block): bold markers show
    prose = page.evaluate(PROSE)
    raw = [m.group(0) for m in re.finditer(r".{0,20}\*\*[A-Z][a-z].{0,30}", prose)]
    if raw:
        problems.append(f"raw Markdown shows ({len(raw)}x), e.g. {raw[0]!r}")
    if "/executed/" in path.as_posix():
        shown = [t for t in page.locator(".cell_input").all_inner_texts()
                 if re.search(r"^profile = ", t, re.M)]  # fmt: skip
        if len(shown) != 1 or "# Parameters" not in shown[0]:
            problems.append(f"the parameters do not show once as papermill's: {shown!r}")
        if page.locator("details.hide.above-input").count() == 0:
            problems.append("no cell folds its code behind a click")
    return problems


def book_check(args: argparse.Namespace) -> None:
    html = args.html.resolve()
    pages = book_pages(html, args.toc)
    missing = [p for p in pages if not p.is_file()]
    check(not missing, f"{len(pages)} pages of {args.toc} are built (run `make book` first)"
          + (f"; missing: {[str(p) for p in missing]}" if missing else ""))  # fmt: skip
    if args.shots:
        args.shots.mkdir(parents=True, exist_ok=True)
    failures = []
    with browser_page(args.chromium, width=1300, height=900) as page:
        for path in pages:
            name = path.relative_to(html).with_suffix("").as_posix()
            if args.shots:  # the page as it opens, before any fold is opened
                page.goto(path.as_uri())
                page.wait_for_load_state("load")
                shot = args.shots / f"book-{path.stem}.png"
                page.screenshot(path=str(shot), full_page=args.full_page)
            problems = check_page(page, path)
            for p in problems:
                print(f"[fail] {name}: {p}", flush=True)
            if not problems:
                print(f"[ok] {name}: tables fit, no NaN, no raw Markdown", flush=True)
            failures += [f"{name}: {p}" for p in problems]
    check(not failures, "every page passes" if not failures else
          f"{len(failures)} failure(s) on {len({f.split(':')[0] for f in failures})} page(s)")


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
    book = sub.add_parser("book", help="every built page: tables fit, no NaN, code folded")
    book.add_argument("--html", type=Path, default=Path("_build/html"), help="built book")
    book.add_argument("--toc", type=Path, default=Path("_toc.yml"), help="its table of contents")
    book.add_argument("--shots", type=Path, help="folder for a screenshot of each page")
    book.add_argument("--full-page", action="store_true", help="whole pages, not their tops")
    args = parser.parse_args(argv)
    try:
        (lab_check if args.what == "lab" else book_check)(args)
    except CheckFailed as exc:
        print(f"browser_check {args.what}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
