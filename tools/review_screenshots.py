"""The screenshots of docs/review.md: scan a folder of real music, open ``tagger review`` in
headless chromium (selenium, Debian's chromium + chromium-driver) and save the queue, a track
page (playing) and the stats page as small PNGs.

    python tools/review_screenshots.py MUSIC_FOLDER [--out docs/review]

Everything else (the copy of the music, the catalogue, the state) goes to a temporary folder.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def shrink(path: Path) -> None:
    """256 colours: a screenshot of a page loses nothing visible and a lot of bytes."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as image:
        image.convert("RGB").quantize(256).save(path, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("music")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs"
                                             / "review"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        lib = work / "Music"
        shutil.copytree(args.music, lib, ignore=shutil.ignore_patterns("*.txt", "*.md"))
        for copied in lib.rglob("*"):  # the originals may be read-only; the copies are ours
            copied.chmod(0o755 if copied.is_dir() else 0o644)
        config = work / "tagger.toml"
        config.write_text(f'state_dir = "{work / "state"}"\n[library]\nroots = ["{lib}"]\n',
                          encoding="utf-8")
        tagger = [sys.executable, "-m", "tagger", "--config", str(config)]
        subprocess.run([*tagger, "scan", "-q"], check=False)
        server = subprocess.Popen([*tagger, "review", "--port", "0"], stdout=subprocess.PIPE,
                                  text=True)
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                     "--window-size=1150,860", "--hide-scrollbars"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            url = server.stdout.readline().split()[-1]
            base = re.match(r"(http://[^/]+)", url).group(1)
            driver.get(url)
            driver.get(base + "/queue?q=all&sort=confidence")
            driver.save_screenshot(str(out / "queue.png"))
            first = driver.find_element(By.CSS_SELECTOR, "#queue tbody tr").get_attribute(
                "data-track")
            driver.set_window_size(1150, 1400)  # the taggram and the segments too
            driver.get(f"{base}/track/{first}")
            player = driver.find_element(By.ID, "player")
            driver.execute_script("arguments[0].currentTime = 10.5; arguments[0].play();",
                                  player)
            deadline = time.monotonic() + 30
            while (driver.execute_script("return arguments[0].currentTime", player) < 11.0
                   and time.monotonic() < deadline):
                time.sleep(0.2)
            driver.execute_script("arguments[0].pause()", player)
            driver.save_screenshot(str(out / "track.png"))
            driver.set_window_size(1150, 860)
            driver.get(base + "/stats")
            driver.save_screenshot(str(out / "stats.png"))
        finally:
            driver.quit()
            server.terminate()
            server.wait(timeout=30)
    for name in ("queue", "track", "stats"):
        shrink(out / f"{name}.png")
        print(f"{out / name}.png: {(out / f'{name}.png').stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
