"""examples/argocd: the Application installs the chart in wave 0 and the stacks in wave 1."""

from __future__ import annotations

import pathlib

import yaml

from conftest import REPO

APP = REPO / "examples" / "argocd" / "application.yaml"
WAVE = "argocd.argoproj.io/sync-wave"


def application():
    return yaml.safe_load(APP.read_text())


def wave(obj) -> int:
    return int((obj["metadata"].get("annotations") or {}).get(WAVE, "0"))


def test_application_shape():
    app = application()
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    chart_src, stacks_src = app["spec"]["sources"]
    assert chart_src["path"] == "charts/imagestack-operator"
    assert (REPO / chart_src["path"] / "Chart.yaml").is_file()
    assert (REPO / stacks_src["path"]).is_dir()


def test_application_values_are_valid_chart_values(chart, render):
    values = application()["spec"]["sources"][0]["helm"]["valuesObject"]
    chart.validate_schema(values)
    r = render(values)
    # Everything the chart renders stays in wave 0 (no object of ours sets a later wave).
    assert {wave(o) for o in r.objects} == {0}
    assert "--aws-region=eu-west-1" in r.args()


def test_stacks_sync_after_the_chart():
    stacks_dir = REPO / application()["spec"]["sources"][1]["path"]
    docs = [d for f in sorted(pathlib.Path(stacks_dir).glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    assert docs, f"no manifests in {stacks_dir}"
    for d in docs:
        assert d["kind"] == "ImageOptimizationStack"
        assert wave(d) == 1, f"{d['metadata']['name']} must be in sync wave 1"
        assert "SkipDryRunOnMissingResource=true" in d["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
