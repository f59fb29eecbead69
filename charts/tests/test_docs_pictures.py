"""docs/dashboard.svg is rendered from docs/dashboard-body.example.json and is current; both SVGs parse."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

from conftest import REPO

DOCS = REPO / "docs"
SVG = "{http://www.w3.org/2000/svg}"


def render(body_path):
    return subprocess.run(
        [sys.executable, str(DOCS / "render-dashboard-svg.py"), str(body_path)], capture_output=True, text=True, check=True
    ).stdout


def test_dashboard_svg_is_rendered_from_the_example_body():
    assert render(DOCS / "dashboard-body.example.json") == (DOCS / "dashboard.svg").read_text(), (
        "docs/dashboard.svg is stale: python3 docs/render-dashboard-svg.py docs/dashboard-body.example.json > docs/dashboard.svg"
    )


def test_every_widget_is_drawn_with_its_title(tmp_path):
    body = json.loads((DOCS / "dashboard-body.example.json").read_text())
    root = ET.fromstring(render(DOCS / "dashboard-body.example.json"))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    titles = [w["properties"]["title"] for w in body["widgets"] if w["type"] == "metric"]
    assert len(titles) == 10
    for title in titles:
        assert any(t.startswith(title) for t in texts), title
    # the required content is on the picture
    joined = "\n".join(texts)
    for needle in ("Invocations (Sum)", "Throttles (Sum)", "p99: Duration", "p99: ProcessingTime", "ProcessedImages",
                   "BytesOut webp", "BytesOut png", "ReadThrottleEvents", "4xxErrorRate", "5xxErrorRate", "Requests (Sum)",
                   "Environment=dev", "FunctionName="):
        assert needle in joined, needle
    # widgets keep CloudWatch's grid geometry: one card per widget, none overlapping
    cards = [r for r in root.iter(f"{SVG}rect") if r.get("rx") == "3"]
    assert len(cards) == len(body["widgets"])
    boxes = [(float(r.get("x")), float(r.get("y")), float(r.get("width")), float(r.get("height"))) for r in cards]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            overlap = a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]
            assert not overlap, (a, b)


def test_architecture_svg_parses():
    root = ET.parse(DOCS / "architecture.svg").getroot()
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for needle in ("ImageOptimizationStack", "S3 upload bucket", "Lambda: processor", "DynamoDB table", "CloudFront", "CloudWatch", "Lease"):
        assert needle in texts, needle
