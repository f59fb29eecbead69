"""Status objects captured from the operator (docs/argocd/testdata) follow the kstatus conventions
that Flux, kpt and Argo CD read. docs/kstatus.md describes the contract checked here."""

from __future__ import annotations

import re

import pytest
import yaml

from conftest import REPO

TESTDATA = REPO / "docs" / "argocd" / "testdata"
CAPTURED = [p for p in sorted(TESTDATA.glob("*.yaml")) if p.read_text().startswith("# Captured")]
REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")  # metav1.Condition's reason format
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def test_there_are_captured_samples():
    assert len(CAPTURED) >= 4, [p.name for p in CAPTURED]


@pytest.mark.parametrize("path", CAPTURED, ids=[p.stem for p in CAPTURED])
def test_condition_shapes(path):
    obj = yaml.safe_load(path.read_text())
    gen = obj["metadata"]["generation"]
    status = obj["status"]
    assert status["observedGeneration"] == gen
    conds = {c["type"]: c for c in status["conditions"]}
    assert sorted(conds) == ["Ready", "Reconciling", "Stalled"], "exactly the three kstatus conditions"
    for c in conds.values():
        assert c["status"] in ("True", "False")
        assert REASON.match(c["reason"]), c["reason"]
        assert c["observedGeneration"] == gen
        assert RFC3339.match(str(c["lastTransitionTime"])), c["lastTransitionTime"]
        assert isinstance(c.get("message", ""), str)
    ready, reconciling, stalled = (conds[t]["status"] == "True" for t in ("Ready", "Reconciling", "Stalled"))
    assert not (reconciling and stalled), "kstatus: Reconciling and Stalled are never both True"
    if ready:
        assert not reconciling and not stalled
    else:
        assert reconciling or stalled, "a stack that is not Ready says why: Reconciling or Stalled"
        assert conds["Ready"]["message"], "Ready=False carries a message"
