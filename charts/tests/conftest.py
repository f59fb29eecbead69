"""Shared fixtures for the chart tests: the chart loaded by the real Helm engine, and a render helper."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
import yaml

import helm_python as helm

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "imagestack-operator"
RELEASE = "imagestack"
NAMESPACE = "imagestack-system"


class Rendered:
    """The objects of one render, indexed by kind and name."""

    def __init__(self, manifests: dict[str, str]):
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for path, text in manifests.items():
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.objects.append(doc)

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
        return found[0]

    def container(self) -> dict[str, Any]:
        containers = self.one("Deployment")["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    def args(self) -> list[str]:
        return self.container()["args"]


@pytest.fixture(scope="session")
def chart():
    c = helm.Chart.load(str(CHART_DIR))
    yield c
    c.close()


@pytest.fixture(scope="session")
def render(chart):
    def _render(values: dict[str, Any] | None = None, namespace: str = NAMESPACE, name: str = RELEASE) -> Rendered:
        return Rendered(chart.render(values or {}, name=name, namespace=namespace))

    return _render
