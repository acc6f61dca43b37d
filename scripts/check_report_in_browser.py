"""Open the HTML report in a real browser (headless Chromium, network off) and save a screenshot.

Not run by CI. Runs the demo-sized pipeline into a fresh demo home (or reuses an existing home with
--home), writes the report, and asks Chromium for a full-page PNG. A report that needed the network or
failed to render would show blank charts in the PNG: look at it.

    .venv/bin/python scripts/check_report_in_browser.py [--home DIR] [--jobs 3000] [--out report.png]
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from cli.demo import run_demo
from pipelines.config import Home, utcnow
from pipelines.report import default_report_path, write_home_report
from pipelines.settings import Settings

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "chromium", "chromium-browser")
WINDOW = "1400,2200"


class BrowserMissingError(RuntimeError):
    """No Chromium binary was found."""


def find_chromium() -> str:
    """The path of the Chromium binary (Debian's package: `apt-get install -y chromium`)."""
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise BrowserMissingError("Chromium not found: install Debian's package with `apt-get install -y chromium`")


def screenshot(page: Path, png: Path, timeout: float = 120.0) -> None:
    """Render `page` with headless Chromium (no network, no GPU, a throwaway profile) into `png`."""
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        command = [
            find_chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-extensions",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            # Any request leaving the page would fail: a self-contained report still renders in full.
            "--proxy-server=127.0.0.1:9",
            "--proxy-bypass-list=<-loopback>",
            f"--window-size={WINDOW}",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if not png.exists():
        raise RuntimeError(f"Chromium wrote no screenshot (exit {done.returncode}):\n{done.stderr[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="use this existing home instead of running the demo")
    parser.add_argument("--demo-home", type=Path, default=Path("demo"), help="where the demo runs (default ./demo)")
    parser.add_argument("--jobs", type=int, default=3000, help="demo jobs (default 3000)")
    parser.add_argument("--out", type=Path, default=Path("report.png"), help="the screenshot (default report.png)")
    args = parser.parse_args()
    console = Console()
    if args.home:
        home = Home(args.home.resolve())
        page = write_home_report(home, utcnow()).path
    else:
        if run_demo(console, args.demo_home, jobs=args.jobs, settings=Settings.from_env()) != 0:
            return 1
        page = default_report_path(Home(args.demo_home.resolve()))
    screenshot(page, args.out)
    console.print(f"Report:     {page}\nScreenshot: {args.out.resolve()}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
