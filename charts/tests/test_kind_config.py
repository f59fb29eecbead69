"""kind-config.yaml: a control plane and a worker, every node on one pinned node image."""

from __future__ import annotations

import re

import yaml

from conftest import REPO


def test_kind_config():
    cfg = yaml.safe_load((REPO / "kind-config.yaml").read_text())
    assert cfg["kind"] == "Cluster" and cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane", "worker"]
    images = {n["image"] for n in cfg["nodes"]}
    assert len(images) == 1, f"nodes on different images: {images}"
    image = images.pop()
    assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", image), image
    # scripts/lib.sh creates the cluster as `kind create cluster --name imagestack`.
    assert cfg.get("name") == "imagestack"
