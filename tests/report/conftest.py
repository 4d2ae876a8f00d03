"""The report tests' real browser: headless Chromium opening a page with a probe that reports broken images,
console errors and whether an injected script ran (`browser` fixture)."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

PROBE_HEAD = """<script>
window.__probe = {errors: []};
for (const level of ["error", "warn"]) {
  const orig = console[level];
  console[level] = (...args) => {
    window.__probe.errors.push(level + ": " + args.join(" "));
    orig.apply(console, args);
  };
}
window.addEventListener("error", e => window.__probe.errors.push("error event: " +
  (e.message || (e.target && (e.target.outerHTML || "").slice(0, 80)))), true);
window.addEventListener("unhandledrejection", e => window.__probe.errors.push("rejection: " + e.reason));
</script>"""
PROBE_TAIL = """<script>
window.addEventListener("load", () => {
  const imgs = [...document.images];
  const out = {images: imgs.length, broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
               errors: window.__probe.errors,
               pwned: window.__mirage_pwned === undefined ? null : window.__mirage_pwned,
               title: document.title, shown: document.body.textContent.includes('<script>window.__mirage_pwned')};
  const pre = document.createElement("pre");
  pre.id = "mirage-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    """The headless browser; a clear failure (not a skip) when it is missing, unless MIRAGE_SKIP_BROWSER=1."""
    if os.environ.get("MIRAGE_SKIP_BROWSER") == "1":
        pytest.skip("MIRAGE_SKIP_BROWSER=1")
    for name in (os.environ.get("MIRAGE_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    pytest.fail("chromium not found: install Debian's chromium (apt-get install -y chromium; .ci/run does) "
                "or set MIRAGE_SKIP_BROWSER=1 to skip the browser tests")


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def browse(page: Path, tmp_path: Path) -> dict:
    """Open `page` (its CSP line removed, so the probe may run) in headless Chromium; the probe's findings."""
    text = page.read_text()
    csp = re.search(r'<meta http-equiv="Content-Security-Policy"[^>]*>', text)
    assert csp, "the report should forbid scripts and network with a CSP"
    text = text.replace(csp.group(0), PROBE_HEAD, 1).replace("</body>", PROBE_TAIL + "</body>", 1)
    probed = tmp_path / "probed.html"
    probed.write_text(text)
    res = run_chromium(["--virtual-time-budget=15000", "--dump-dom", probed.as_uri()], tmp_path / "profile")
    found = re.search(r'<pre id="mirage-probe">(.*?)</pre>', res.stdout, re.S)
    assert found, f"no probe result in the page (chromium rc {res.returncode}): {res.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1))) | {"console": console_lines(res.stderr)}


@pytest.fixture
def browser() -> SimpleNamespace:
    """`browse(page, tmp_path)` -> the probe's findings; `run_chromium(args, profile)`; `console_lines(stderr)`."""
    chromium()  # a missing browser fails (or skips with MIRAGE_SKIP_BROWSER=1) before any work
    return SimpleNamespace(browse=browse, run_chromium=run_chromium, console_lines=console_lines)
