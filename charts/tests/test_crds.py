"""The chart's CRD: identical to the generated one, and accepted by a real Kubernetes API server.

The API server is the one KUBECONFIG points at (charts/test.sh starts a private one from
../shared/envtest when none is reachable). It may have no core API group, so only the CRD is
installed here; test_deployed.py installs the whole chart into the full API server. The CRD is
applied with server-side apply and never deleted: deleting a CRD deletes every stack other tests
created.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import uuid

import pytest
import yaml

from conftest import CHART_DIR, REPO

CHART_CRD = CHART_DIR / "crds" / "imagestack.dev_imagestacks.yaml"
TOP_CRD = REPO / "crds" / "imagestack.dev_imagestacks.yaml"
CRD_NAME = "imagestacks.imagestack.dev"
STACK_NAMESPACE = "chart-test"


def test_chart_crd_is_a_byte_exact_copy_of_the_generated_one():
    assert CHART_CRD.read_bytes() == TOP_CRD.read_bytes(), (
        "charts/imagestack-operator/crds/ is stale: run charts/imagestack-operator/sync-crds.sh"
    )


def test_helm_sees_exactly_one_crd(chart):
    crds = chart.crds
    assert [c["filename"] for c in crds] == ["imagestack-operator/crds/imagestack.dev_imagestacks.yaml"]
    assert crds[0]["data"] == TOP_CRD.read_text()
    doc = yaml.safe_load(crds[0]["data"])
    assert doc["kind"] == "CustomResourceDefinition" and doc["metadata"]["name"] == CRD_NAME
    # crds/ is not templated: nothing of it may end up in the rendered templates.
    assert all("CustomResourceDefinition" not in text for text in chart.render({}, name="x", namespace="y").values())


# ---------------------------------------------------------------- against a real API server


def kubectl(*args, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["kubectl", "--request-timeout=30s", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


@pytest.fixture(scope="module")
def api_server():
    reachable = (
        subprocess.run(["kubectl", "get", "--raw", "/version", "--request-timeout=5s"], capture_output=True).returncode == 0
    )
    if not reachable:
        msg = f"no reachable Kubernetes API server (KUBECONFIG={os.environ.get('KUBECONFIG', '<unset>')})"
        if os.environ.get("IMAGESTACK_REQUIRE_KUBE") == "1":
            pytest.fail(msg + "; charts/test.sh should have started one")
        pytest.skip(msg + "; run through charts/test.sh to start one")
    return True


@pytest.fixture(scope="module")
def installed_crd(api_server):
    # A server-side dry run first: the API server validates the CRD (structural schema, CEL
    # rules compile, printer columns) without changing anything.
    kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=imagestack-chart", "-f", str(CHART_CRD))
    kubectl("apply", "--server-side", "--field-manager=imagestack-chart", "-f", str(CHART_CRD))
    kubectl("wait", "--for=condition=Established", f"crd/{CRD_NAME}", "--timeout=60s")
    # The stacks below are dry-run created in STACK_NAMESPACE. The full kube-apiserver wants that
    # Namespace to exist; the CRD-only server has no Namespace API and accepts any name (then this
    # create fails, harmlessly). AlreadyExists is fine too.
    kubectl("create", "namespace", STACK_NAMESPACE, check=False)
    return json.loads(kubectl("get", f"crd/{CRD_NAME}", "-o", "json").stdout)


def test_crd_is_established_with_the_chart_schema(installed_crd):
    crd = installed_crd
    conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conds.get("Established") == "True" and conds.get("NamesAccepted") == "True", conds
    want = yaml.safe_load(CHART_CRD.read_text())
    # The server holds the schema we shipped (not an older one someone else applied).
    assert crd["spec"]["versions"][0]["schema"] == want["spec"]["versions"][0]["schema"]
    assert crd["spec"]["names"]["plural"] == "imagestacks"


def stack(example: str, name: str, namespace: str) -> dict:
    obj = yaml.safe_load((REPO / "examples" / example).read_text())
    obj = copy.deepcopy(obj)
    obj["metadata"] = {**obj["metadata"], "name": name, "namespace": namespace}
    return obj


@pytest.mark.parametrize("example", ["stack-dev.yaml", "stack-prod.yaml", "argocd/stacks/images.yaml"])
def test_examples_are_accepted_and_defaulted(installed_crd, example):
    name = f"chart-test-{uuid.uuid4().hex[:8]}"
    obj = stack(example, name, STACK_NAMESPACE)
    out = kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(obj))
    created = json.loads(out.stdout)
    assert created["metadata"]["name"] == name
    # Defaults come from the CRD's structural schema: the server filled in fields the example omits.
    assert "buckets" in created["spec"] and "emptyOnDelete" in created["spec"]["buckets"], created["spec"]


def test_invalid_stack_is_rejected_by_the_chart_crd(installed_crd):
    obj = stack("stack-dev.yaml", f"chart-test-{uuid.uuid4().hex[:8]}", STACK_NAMESPACE)
    obj["spec"]["processor"]["memoryMb"] = 64  # Lambda's minimum is 128 MB
    out = kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(obj), check=False)
    assert out.returncode != 0, "the API server accepted memoryMb=64"
    assert "spec.processor.memoryMb" in out.stderr, out.stderr
