"""The HTML report: written by ``match --report`` and ``report``, rendered in headless
Chromium, its tables checked against the statistics computed here."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import DATA_DIR, read_raster

from spectralmatch.cli.main import main
from spectralmatch.model.pipeline import Mosaic
from spectralmatch.report.html import FIGURES, write_report
from spectralmatch.report.metrics import overlap_differences

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
TILES = sorted(DATA_DIR.glob("tile_*.tif"))


@pytest.fixture(scope="module")
def matched(tmp_path_factory):
    """The sample matched by ``match --report``: (folder, matched folder, report folder)."""
    folder = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(
        main,
        [
            "match",
            str(DATA_DIR),
            "-o",
            str(folder / "matched"),
            "--save-model",
            str(folder / "model.json"),
            "--report",
            str(folder / "report"),
            "--no-cache",
        ],
    )
    assert result.exit_code == 0, result.output
    return folder


def rendered(page, profile) -> dict:
    """What the page's check script saw in headless Chromium: figure widths and table cells."""
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    found = re.search(r'<pre id="page-check"[^>]*>(.*?)</pre>', result.stdout, re.DOTALL)
    assert found and found.group(1), "the page's check script did not run"
    return json.loads(html.unescape(found.group(1)))


def overlap_rows(before, after) -> list[list[str]]:
    """The overlap table as the page must print it (two decimals)."""
    later = {(d.first, d.second): d.mean_abs_difference for d in overlap_differences(after)}
    return [
        [d.first, d.second] + interleaved(d.mean_abs_difference, later[(d.first, d.second)])
        for d in overlap_differences(before)
    ]


def band_means(path) -> list[float]:
    """Mean of each band over its pixels that are not nodata (0 in the sample)."""
    values = read_raster(path).astype(np.float64)
    return [band[band != 0].mean() for band in values]


def interleaved(before, after) -> list[str]:
    """Before and after of each band, printed with two decimals."""
    return [f"{value:.2f}" for pair in zip(before, after, strict=True) for value in pair]


def check_page(seen, folder) -> None:
    # the figures of every report, and the block surfaces of the model's local step
    assert len(seen["widths"]) == len(FIGURES) + 1
    assert all(width > 0 for width in seen["widths"])
    assert seen["tables"]["overlap-differences"] == overlap_rows(DATA_DIR, folder / "matched")
    assert seen["tables"]["image-means"] == [
        [path.stem] + interleaved(band_means(path), band_means(folder / "matched" / path.name))
        for path in TILES
    ]
    step = Mosaic.load(folder / "model.json").steps_[0]
    gains = [
        [name] + [f"{value:.4f}" for pair in zip(g, o, strict=True) for value in pair]
        for name, g, o in zip(step.images_, step.gains_, step.offsets_, strict=True)
    ]
    assert seen["tables"]["step-1-gains"] == gains


@needs_chromium
def test_match_report_renders_in_chromium_with_the_statistics(matched, tmp_path):
    seen = rendered(matched / "report" / "index.html", tmp_path / "profile")
    check_page(seen, matched)
    for _, name, _ in FIGURES:
        assert (matched / "report" / name).stat().st_size > 0


@needs_chromium
def test_report_command_renders_the_same_page_with_its_command_line(matched, tmp_path):
    command = [sys.executable, "-m", "spectralmatch", "report", str(DATA_DIR)]
    command += ["--matched", str(matched / "matched"), "--model", str(matched / "model.json")]
    command += ["-o", str(tmp_path / "report")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    page = tmp_path / "report" / "index.html"
    check_page(rendered(page, tmp_path / "profile"), matched)
    text = page.read_text()
    assert html.escape(f"--matched {matched / 'matched'}") in text
    assert set(re.findall(r'(?:src|href)="([^":]*):', text)) == {"data"}


def test_report_names_the_missing_matched_image(tmp_path):
    (tmp_path / "matched").mkdir()
    arguments = ["report", str(TILES[0]), "--matched", str(tmp_path / "matched")]
    result = CliRunner().invoke(main, [*arguments, "-o", str(tmp_path / "report")])
    assert result.exit_code == 1
    assert str(tmp_path / "matched" / "tile_00.tif") in result.output
    assert not (tmp_path / "report").exists()


def test_page_escapes_every_value(matched, tmp_path):
    command = 'spectralmatch match "<b>tile</b>" & more'
    page = write_report(DATA_DIR, matched / "matched", tmp_path, [command]).read_text()
    assert "<b>tile</b>" not in page
    assert "&quot;&lt;b&gt;tile&lt;/b&gt;&quot; &amp; more" in page
    assert "No model was given." in page
