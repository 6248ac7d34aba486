"""The inspection report in headless Chromium: every plot renders, nothing is fetched, the CLI writes it."""

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from inspect_helpers import overflowing_gradient_model, train_mixed

from mpx.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="Debian's chromium is not installed (.ci/run installs it)"
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]


class Plots(HTMLParser):
    """The <body> attributes and every plot's data-rendered flag of a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.rendered = {}, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if tag == "svg" and "plot" in (attrs.get("class") or "").split():
            self.rendered.append(attrs.get("data-rendered"))


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    model, x, y = overflowing_gradient_model()
    trainer = train_mixed(model, x, y, 8, inspect=True)
    return trainer.inspection.save(tmp_path_factory.mktemp("inspect") / "report.html")


@needs_chromium
def test_every_plot_renders_in_chromium(page):
    done = subprocess.run(
        [CHROMIUM, *FLAGS, "--virtual-time-budget=3000", "--dump-dom", f"file://{page}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    plots = Plots()
    plots.feed(done.stdout)
    written = len(re.findall(r"<svg class='plot'", page.read_text()))
    assert written > 10 and plots.body.get("data-plots") == str(written)
    assert plots.body.get("data-plots-rendered") == str(written)
    assert plots.rendered == ["1"] * written


@needs_chromium
def test_screenshot_is_not_blank(page, tmp_path):
    from test_conformance_html import png_pixels

    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [CHROMIUM, *FLAGS, f"--screenshot={shot}", "--window-size=900,700", f"file://{page}"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0
    width, _, rows = png_pixels(shot.read_bytes())
    bpp = len(rows[0]) // width
    assert len({row[i : i + 3] for row in rows[::4] for i in range(0, len(row), bpp * 4)}) > 10


def test_report_is_self_contained_and_names_the_skipped_steps_culprit(page):
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<link" not in text and "src=" not in text
    assert "<code>2.weight</code>" in text and "loss scale per step" in text


def test_cli_train_writes_the_report_and_refuses_an_unknown_suffix(tmp_path, capsys):
    path = tmp_path / "numerics.html"
    assert main(["train", "--steps", "3", "--no-progress", "--precision", "fp16-mixed", "--inspect", str(path)]) == 0
    assert "<svg class='plot'" in path.read_text() and "numerics report" in capsys.readouterr().out
    assert main(["train", "--steps", "3", "--inspect", str(tmp_path / "numerics.txt")]) == 2
    assert "name the report .html or .json" in capsys.readouterr().err
    assert not (tmp_path / "numerics.txt").exists()
