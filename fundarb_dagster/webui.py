"""The Dagster web UI on a data folder's instance: start the real webserver, ask its GraphQL API (the UI's own
data), and take screenshots of the pages a trader reads with the OS's Chromium driven by Playwright.

`fundarb ui` runs the webserver in the foreground; `fundarb screenshots` and the UI tests use `webserver()`
here. Playwright (the `dev` extra) drives the Chromium of the OS packages (`apt-get install -y chromium`)
through `executable_path`: no browser download.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .instance import dagster_env

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
READY_QUERY = "{ assetNodes { assetKey { path } } }"


@dataclass(frozen=True)
class Page:
    """A page of the UI worth a screenshot: where it is, the text it is scrolled to, what it answers."""

    name: str
    path: str
    anchor: str
    caption: str


# The pages docs/ui.md shows, in reading order: what to put on now, how it went, what is wrong. `anchor` is
# the exact text (a metadata entry's label, a check's or a job's name) the page is scrolled to.
PAGES = (
    Page("opportunities", "/assets/opportunities", "ranking",
         "The carry ranking on the `opportunities` page: a table, units in the column names."),
    Page("funding_heat_map", "/assets/funding_rates", "funding_heat_day",
         "The funding heat map (venue x underlying, APR %) of the last day and week on `funding_rates`."),
    Page("funding_spreads", "/assets/funding_spreads", "spreads_by_pair",
         "Every venue pair's funding spread: latest hour, day and week means; the plot is one click away."),
    Page("backtest_runs", "/assets/backtest_runs", "summary",
         "One strategy's backtest: summary and PnL attribution tables, headline numbers with units."),
    Page("backtest_comparison", "/assets/backtest_runs", "strategies_compared",
         "Every strategy's latest backtest side by side, with the best points of each strategy's sweep."),
    Page("risk_report", "/assets/risk_report", "breach_table",
         "The risk report: limit breaches (critical first) and the book's figures in USD and %."),
    Page("alerts", "/assets/alerts", "recent_alerts", "The alerts raised, newest first."),
    Page("checks", "/assets/ohlcv_1m?view=checks", "ohlcv_1m_has_no_gaps",
         "Asset checks: a check with no rows to look at warns \"no data\" instead of passing."),
    Page("runs", "/runs", "Launched by", "The run list: every run is a named job with its partition or window."),
)  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(base_url: str, query: str, variables: dict[str, Any] | None = None, timeout_s: float = 60) -> dict:
    """POST a query to the webserver's /graphql; the `data` of the answer (errors raise, naming them)."""
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{base_url}/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise RuntimeError(f"graphql: {answer['errors']}")
    return answer["data"]


def webserver_command(port: int, host: str = "127.0.0.1") -> list[str]:
    executable = Path(sys.executable).with_name("dagster-webserver")
    return [str(executable), "-m", "fundarb_dagster.definitions", "-h", host, "-p", str(port)]


@contextmanager
def webserver(data_dir: Path, log_path: Path, port: int | None = None, timeout_s: float = 180) -> Iterator[str]:
    """A real dagster-webserver on the data folder's instance (the demo's), until the block ends; yields its
    base URL once /graphql answers with the asset graph."""
    port = port or free_port()
    env = {**os.environ, **dagster_env(Path(data_dir))}
    with log_path.open("w") as log:
        process = subprocess.Popen(webserver_command(port), env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout_s
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"webserver exited with {process.returncode}: {log_path.read_text()[-3000:]}")
                try:
                    if graphql(base, READY_QUERY, timeout_s=10).get("assetNodes"):
                        break
                except (OSError, RuntimeError, urllib.error.URLError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"webserver not ready after {timeout_s:g} s: {log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def skip_welcome(base_url: str) -> None:
    """Mark the UI's one-time "Join the Dagster community" dialog as seen, as its Skip button does (the same
    GraphQL mutation), so a fresh instance's pages are not covered by it."""
    graphql(base_url, "mutation SetNuxSeen { setNuxSeen }")


def find_chromium() -> str:
    """The OS's Chromium: `FUNDARB_CHROMIUM` if set, else the first of the usual names on PATH."""
    configured = os.environ.get("FUNDARB_CHROMIUM")
    if configured:
        if not Path(configured).is_file():
            raise FileNotFoundError(f"FUNDARB_CHROMIUM: {configured!r} is not a file")
        return configured
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(
        f"chromium: none of {list(CHROMIUM_NAMES)} is on PATH; install it (Debian/Ubuntu: "
        "`sudo apt-get install -y chromium`) or set FUNDARB_CHROMIUM to its path"
    )


@contextmanager
def browser_page(width: int = 1680, height: int = 1050) -> Iterator[Any]:
    """A Playwright page in the OS's headless Chromium (no browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        browser = playwright.chromium.launch(
            executable_path=find_chromium(), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def open_page(page: Any, base_url: str, target: Page, timeout_s: float = 90) -> Any:
    """Go to a UI page, wait until its anchor text is visible (the UI renders after its GraphQL answers) and
    scroll it to the top of the view, as a reader scrolls (no click); returns the anchor's locator."""
    page.goto(f"{base_url}{target.path}", wait_until="domcontentloaded", timeout=timeout_s * 1000)
    anchor = page.get_by_text(target.anchor, exact=True).first
    anchor.wait_for(state="visible", timeout=timeout_s * 1000)
    page.wait_for_timeout(1000)  # the rest of the page (counts, thumbnails) settles
    anchor.evaluate("element => element.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(300)
    return anchor


def take_screenshots(data_dir: Path, out_dir: Path, pages: tuple[Page, ...] = PAGES) -> list[Path]:
    """Start the webserver on the data folder's instance and save one PNG per page into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    saved = []
    with webserver(data_dir, out_dir / "webserver.log") as base, browser_page() as page:
        skip_welcome(base)
        for target in pages:
            open_page(page, base, target)
            path = out_dir / f"{target.name}.png"
            page.screenshot(path=str(path), full_page=False)
            saved.append(path)
            print(f"  {path}  ({target.path})", flush=True)
    (out_dir / "webserver.log").unlink(missing_ok=True)
    return saved
