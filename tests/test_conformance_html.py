"""The HTML report in headless Chromium: the matrix renders, its statuses match the JSON, the filters work."""

import json
import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser

import pytest
from conformance_helpers import full_cpu_run, load_json

from mpx.conformance.render import html
from mpx.conformance.report import Report
from mpx.conformance.status import worst

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI installs chromium (.ci/run): there a missing browser fails the tests instead of skipping them
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"), reason="Debian's chromium is not installed (.ci/run installs it)"
)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"]


def chromium(*args: str) -> str:
    done = subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Cells(HTMLParser):
    """The matrix cells of a DOM dump (data-* attributes), the <body> attributes and the hidden rows."""

    def __init__(self) -> None:
        super().__init__()
        self.cells, self.body, self.hidden_rows, self.rows = {}, {}, 0, 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if tag == "tr" and "row" in (attrs.get("class") or "").split():
            self.rows += 1
            self.hidden_rows += "hidden" in attrs
        if tag == "td" and "data-status" in attrs and "cell" in (attrs.get("class") or ""):
            key = (attrs["data-backend"], attrs["data-op"], attrs["data-pass"], attrs["data-format"])
            self.cells[key] = (attrs["data-status"], attrs.get("title", ""))


def dom_cells(path, fragment="") -> Cells:
    parser = Cells()
    parser.feed(chromium("--virtual-time-budget=3000", "--dump-dom", f"file://{path}{fragment}"))
    return parser


def expected_cells(report: dict) -> dict:
    grouped = {}
    for backend in report["backends"]:
        for case in backend["cases"]:
            key = (backend["name"], case["op"], case["pass"], case["format"])
            grouped.setdefault(key, []).append(case["status"])
    return {key: worst(statuses) for key, statuses in grouped.items()}


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of raw pixels of an 8-bit RGB/RGBA PNG (enough to look at a screenshot)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat = 8, b""
    while offset < len(data):
        (length,), kind = struct.unpack(">I", data[offset : offset + 4]), data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    assert depth == 8 and colour in (2, 6)
    bpp, raw = (4 if colour == 6 else 3), zlib.decompress(idat)
    stride, rows, previous = width * (4 if colour == 6 else 3), [], bytearray(width * (4 if colour == 6 else 3))
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        previous = line
    return width, height, [bytes(r) for r in rows]


def test_matrix_statuses_in_chromium_match_the_json():
    paths = full_cpu_run()
    cells = dom_cells(paths["html"])
    assert cells.body.get("data-ready") == "1", "the report's script did not run"
    shown = {key: status for key, (status, _) in cells.cells.items()}
    assert shown == expected_cells(load_json(paths["json"]))


def test_hover_titles_carry_each_cases_error_and_reason():
    paths = full_cpu_run()
    cells = dom_cells(paths["html"])
    report = load_json(paths["json"])
    case = report["backends"][0]["cases"][0]
    _, title = cells.cells[("cpu", case["op"], case["pass"], case["format"])]
    assert f"{case['input_class']}: {case['status']}" in title and case["detail"] in title


def test_status_filter_from_the_url_hides_the_other_rows(tmp_path):
    data = load_json(full_cpu_run()["json"])
    cases = data["backends"][0]["cases"]
    for case in cases:
        case["status"] = "pass"
    cases[5]["status"], cases[5]["detail"] = "crash", "the process died with SIGABRT"
    page = tmp_path / "r.html"
    page.write_text(html.render(Report.from_dict(json.loads(json.dumps(data)))))
    cells = dom_cells(page, "#status=crash")
    assert cells.body.get("data-rows-shown") == "1"
    assert cells.hidden_rows == cells.rows - 1


def test_screenshot_shows_a_coloured_matrix(tmp_path):
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1000,700", f"file://{full_cpu_run()['html']}")
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 700)
    bpp = len(rows[0]) // width
    pixels = {row[i : i + 3] for row in rows[::4] for i in range(0, len(row), bpp * 4)}
    assert len(pixels) > 10, "the screenshot is (nearly) uniform"
    green = bytes((0x4C, 0xAF, 0x50))  # .s-pass and .ready
    assert green in {row[i : i + 3] for row in rows for i in range(0, len(row), bpp)}


def test_html_report_uses_no_external_assets():
    text = full_cpu_run()["html"].read_text()
    assert "http://" not in text and "https://" not in text and "<link" not in text and "src=" not in text
