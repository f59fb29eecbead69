"""The operator as the chart deploys it: Helm install, the chart's ServiceAccount, the chart's RBAC.

End to end against a full Kubernetes API server (core API, RBAC enforced, Leases, Events) and the
AWS emulator:

1. install the chart with the real Helm engine (helm-python-sdk, Helm v4) into a fresh release
   namespace: once cluster-wide (the default, ClusterRole), once with operator.watchNamespace
   (Role in that namespace);
2. mint a token for the chart's ServiceAccount (`kubectl create token`) and write a kubeconfig with
   it, so the chart's RBAC applies to every call the operator makes;
3. run the operator binary with exactly the args of the installed Deployment's container (read
   back from the API server), the Deployment's env resolved as the kubelet would (downward API:
   POD_NAME, POD_NAMESPACE), plus --kubeconfig; see `operator_command` for the two local
   substitutions (metrics port, processor artifact dir);
4. a stack reaches Ready, its Events carry reasons and the action, its outputs ConfigMap is written,
   no API call was forbidden, and deleting it removes the finalizer (cleanup under the chart's RBAC).
   With watchNamespace, a stack in another namespace stays untouched.

Runs only with IMAGESTACK_CHART_E2E=1 (`charts/test.sh --deployed`, which ./scripts/test calls
after building the operator); then every missing prerequisite is a failure, never a skip.
Prerequisites: an admin kubeconfig (KUBECONFIG or kubectl's default) of a full API server, the emulator env
(AWS_ENDPOINT_URL, SSL_CERT_FILE, credentials: scripts/emulator/start.sh), the operator binary
(IMAGESTACK_OPERATOR_BIN, else <cargo target dir>/debug/operator) and the development processor
artifact (IMAGESTACK_ARTIFACT_DIR, else .run/artifacts, made by scripts/dev-artifacts.sh).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import time
import urllib.request
import uuid
from typing import Any

import pytest
import yaml

import helm_python as helm

from conftest import CHART_DIR, REPO, Rendered

pytestmark = pytest.mark.skipif(
    os.environ.get("IMAGESTACK_CHART_E2E") != "1",
    reason="end-to-end: set IMAGESTACK_CHART_E2E=1 (charts/test.sh --deployed; ./scripts/test runs it after the build)",
)

CRD_NAME = "imagestacks.imagestack.dev"
FINALIZER = "imagestack.dev/cleanup"
CHART_CRD = CHART_DIR / "crds" / "imagestack.dev_imagestacks.yaml"
READY_TIMEOUT = 120  # seconds; a dev stack is Ready in a few seconds against the emulator
DELETE_TIMEOUT = 120
IGNORED_FOR = 6  # seconds a stack outside watchNamespace is watched for staying untouched
LOG_DIR = REPO / ".run" / "test-logs"
# An API server refusal, as kube-rs logs it ("... is forbidden: User ...", reason Forbidden, code 403).
FORBIDDEN = re.compile(r"forbidden|code: 403\b|\"code\":\s*403\b|\b403 Forbidden", re.IGNORECASE)
# AWS settings the operator takes from its environment in a cluster (IRSA/Pod Identity webhooks or
# a Secret via extraEnvFrom inject them); the endpoint itself goes through the chart's
# operator.aws.endpointUrl, so it arrives from the Deployment's env.
AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "SSL_CERT_FILE",
    "AWS_CA_BUNDLE",
    "AWS_EC2_METADATA_DISABLED",
)


# ---------------------------------------------------------------- helpers


def kubectl(*args: str, kubeconfig: str | None = None, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["kubectl", "--request-timeout=30s", *args]
    if kubeconfig:
        cmd.insert(1, f"--kubeconfig={kubeconfig}")
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


def kget(*args: str) -> dict[str, Any] | None:
    """`kubectl get ... -o json` as the admin; None when not found."""
    proc = kubectl("get", *args, "-o", "json", check=False)
    if proc.returncode != 0:
        if "NotFound" in proc.stderr or "not found" in proc.stderr:
            return None
        raise AssertionError(f"kubectl get {' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cargo_target_dir() -> pathlib.Path:
    if os.environ.get("CARGO_TARGET_DIR"):
        return pathlib.Path(os.environ["CARGO_TARGET_DIR"])
    try:
        meta = subprocess.run(
            ["cargo", "metadata", "--format-version=1", "--no-deps", "--offline"],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
        )
        return pathlib.Path(json.loads(meta.stdout)["target_directory"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return REPO / "target"


def short_id() -> str:
    return uuid.uuid4().hex[:6]


# ---------------------------------------------------------------- prerequisites


@pytest.fixture(scope="module")
def prereqs() -> dict[str, Any]:
    """Everything the test needs, or a failure naming what is missing (never a skip)."""
    problems = []
    if subprocess.run(["kubectl", "get", "--raw", "/version", "--request-timeout=5s"], capture_output=True).returncode != 0:
        problems.append(f"no reachable API server (KUBECONFIG={os.environ.get('KUBECONFIG', '<unset>')}): an admin "
                        "kubeconfig of a full API server is needed (FULL=1 ../shared/envtest/start.sh)")
    else:
        for path, what in (("/api/v1/namespaces/kube-system", "the core API"), ("/apis/rbac.authorization.k8s.io/v1", "RBAC"),
                           ("/apis/coordination.k8s.io/v1", "Leases")):
            if subprocess.run(["kubectl", "get", "--raw", path, "--request-timeout=5s"], capture_output=True).returncode != 0:
                problems.append(f"the API server has no {what} ({path}): this test needs the full kube-apiserver "
                                "(FULL=1 ../shared/envtest/start.sh, or IMAGESTACK_API_SERVER=full for ./scripts/test)")
    if not os.environ.get("AWS_ENDPOINT_URL"):
        problems.append("AWS_ENDPOINT_URL is not set: source the emulator env (. $(scripts/emulator/start.sh)); "
                        "this test never talks to real AWS")
    binary = pathlib.Path(os.environ.get("IMAGESTACK_OPERATOR_BIN") or cargo_target_dir() / "debug" / "operator")
    if not os.access(binary, os.X_OK):
        problems.append(f"operator binary {binary} is missing: cargo build -p imagestack-operator --bin operator "
                        "(or set IMAGESTACK_OPERATOR_BIN)")
    artifacts = pathlib.Path(os.environ.get("IMAGESTACK_ARTIFACT_DIR") or REPO / ".run" / "artifacts")
    if not (artifacts / "x86_64.zip").is_file():
        problems.append(f"{artifacts}/x86_64.zip is missing: run scripts/dev-artifacts.sh (or set IMAGESTACK_ARTIFACT_DIR)")
    if problems:
        pytest.fail("the deployed-chart test cannot run:\n  - " + "\n  - ".join(problems))
    return {"binary": binary, "artifacts": artifacts}


@pytest.fixture(scope="module")
def crd_before() -> bool:
    """Whether the CRD existed before this module installed the chart (other suites may have applied it)."""
    return kget(f"crd/{CRD_NAME}") is not None


# ---------------------------------------------------------------- one installed release + one operator process


class Release:
    """The chart installed by Helm into its own namespace, and the operator run as it would run there."""

    def __init__(self, chart, prereqs: dict[str, Any], tmp: pathlib.Path, values: dict[str, Any], tag: str):
        self.chart = chart
        self.prereqs = prereqs
        self.tmp = tmp
        self.sfx = short_id()
        self.name = f"e2e{self.sfx}"  # unique: the ClusterRoles are cluster-scoped and named after it
        self.namespace = f"ise2e-{self.sfx}-rel"
        self.values = values
        self.cfg: helm.Config | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path = LOG_DIR / f"chart-e2e-{tag}-{self.sfx}.log"
        self.fullname = f"{self.name}-imagestack-operator"
        self.stacks: list[tuple[str, str]] = []  # (namespace, name) of the stacks this test created
        # What the downward API would give a pod of the Deployment: <ReplicaSet name>-<random>.
        self.pod_name = f"{self.fullname}-7d4b9c8f6-{self.sfx[:5]}"

    # ---- stacks
    def apply_stack(self, namespace: str, name: str) -> None:
        self.stacks.append((namespace, name))
        kubectl("apply", "-f", "-", stdin=stack_manifest(namespace, name))

    def cleanup_stacks(self) -> None:
        """After a failure: delete what is left while the operator still runs (bounded); a stack that
        still has the finalizer then loses it, so no later operator run adopts it."""
        left = [(ns, n) for ns, n in self.stacks if get_stack(ns, n) is not None]
        for ns, n in left:
            kubectl("delete", "imagestack", n, "-n", ns, "--wait=false", check=False)
        deadline = time.monotonic() + (30 if self.proc is not None and self.proc.poll() is None else 0)
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = [(ns, n) for ns, n in left if get_stack(ns, n) is not None]
        for ns, n in left:
            kubectl("patch", "imagestack", n, "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)

    # ---- install
    def install(self) -> dict[str, Any]:
        self.cfg = helm.Config(namespace=self.namespace)
        rel = self.cfg.install(self.chart, self.name, self.values, create_namespace=True, timeout=120)
        assert rel.get("info", {}).get("status", "deployed") == "deployed", rel.get("info")
        return rel

    def uninstall(self) -> None:
        if self.cfg is not None:
            try:
                self.cfg.uninstall(self.name, ignore_not_found=True, timeout=60)
            finally:
                self.cfg.close()
                self.cfg = None
        # The namespaces stay (empty): without a controller manager, namespace deletion never finishes.

    def deployment(self) -> dict[str, Any]:
        d = kget("deployment", self.fullname, "-n", self.namespace)
        assert d is not None, f"the chart installed no Deployment {self.namespace}/{self.fullname}"
        return d

    def container(self) -> dict[str, Any]:
        containers = self.deployment()["spec"]["template"]["spec"]["containers"]
        found = [c for c in containers if c["name"] == "operator"]
        assert len(found) == 1, containers
        return found[0]

    def lease_name(self) -> str:
        args = self.container()["args"]
        found = [a.split("=", 1)[1] for a in args if a.startswith("--leader-election-id=")]
        assert len(found) == 1, args
        return found[0]

    def service_account(self) -> str:
        return self.deployment()["spec"]["template"]["spec"]["serviceAccountName"]

    # ---- the ServiceAccount token
    def token_kubeconfig(self) -> pathlib.Path:
        sa = self.service_account()
        if kget("serviceaccount", sa, "-n", self.namespace) is None:
            # serviceAccount.create=false charts name an existing one; there is no controller manager here.
            kubectl("create", "serviceaccount", sa, "-n", self.namespace)
        token = kubectl("create", "token", sa, "-n", self.namespace, "--duration=1h").stdout.strip()
        assert token, "kubectl create token returned nothing"
        admin = json.loads(kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout)
        cluster = dict(admin["clusters"][0]["cluster"])  # same server and CA as the admin kubeconfig
        kc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": cluster}],
            "users": [{"name": sa, "user": {"token": token}}],
            "contexts": [{"name": sa, "context": {"cluster": "cluster", "user": sa, "namespace": self.namespace}}],
            "current-context": sa,
        }
        path = self.tmp / f"{self.name}-token.kubeconfig"
        path.write_text(yaml.safe_dump(kc))
        path.chmod(0o600)
        who = kubectl("auth", "whoami", "-o", "json", kubeconfig=str(path))
        user = json.loads(who.stdout)["status"]["userInfo"]["username"]
        assert user == f"system:serviceaccount:{self.namespace}:{sa}", f"the token kubeconfig acts as {user}"
        return path

    # ---- the operator process
    def operator_command(self, kubeconfig: pathlib.Path, metrics_port: int) -> tuple[list[str], dict[str, str]]:
        c = self.container()
        assert c.get("command") == ["/usr/local/bin/operator"], c.get("command")
        args = list(c["args"])
        assert args and args[0] == "run", args
        # Local substitution 1: the Deployment listens on 0.0.0.0:<metrics.port> inside its pod;
        # here several operators share one host, so the port becomes a free local one.
        metrics = [i for i, a in enumerate(args) if a.startswith("--metrics-addr=")]
        assert len(metrics) == 1, args
        args[metrics[0]] = f"--metrics-addr=127.0.0.1:{metrics_port}"
        # Local substitution 2: in the image the processor artifacts live in /opt/imagestack/processor
        # (the binary's default, also IMAGESTACK_PROCESSOR_ARTIFACT_DIR in the Dockerfile); here
        # they are the development artifacts of this checkout (scripts/dev-artifacts.sh).
        artifact = [i for i, a in enumerate(args) if a.startswith("--processor-artifact-dir")]
        assert all(args[i].startswith("--processor-artifact-dir=/opt/") for i in artifact), args
        args = [a for i, a in enumerate(args) if i not in artifact]
        args.append(f"--processor-artifact-dir={self.prereqs['artifacts']}")
        # Not a substitution: in the pod kube-rs finds the mounted token; here the same token sits in a kubeconfig.
        args.append(f"--kubeconfig={kubeconfig}")

        # Environment: nothing of ours leaks in (no KUBECONFIG, RUST_LOG, IMAGESTACK_* that clap
        # would read as flags), only what a pod would have.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.tmp)}
        env.update({k: os.environ[k] for k in AWS_ENV if k in os.environ})
        assert not c.get("envFrom"), "envFrom is not resolved by this harness"
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
                continue
            field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            # The downward API, as the kubelet resolves it for a pod of this Deployment.
            if field == "metadata.name":
                env[e["name"]] = self.pod_name
            elif field == "metadata.namespace":
                env[e["name"]] = self.deployment()["metadata"]["namespace"]
            else:
                raise AssertionError(f"env {e} is not resolved by this harness")
        return [str(self.prereqs["binary"]), *args], env

    def start_operator(self) -> None:
        kubeconfig = self.token_kubeconfig()
        self.metrics_port = free_port()
        cmd, env = self.operator_command(kubeconfig, self.metrics_port)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            log.write(("# " + " ".join(cmd) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        # Ready when /readyz answers: the cluster id was read (kube-system, under the chart's
        # ClusterRole), the Lease was taken or is being contested.
        deadline = time.monotonic() + 30
        while True:
            self.check_operator()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the operator did not become ready within 30 s\n{self.log_tail()}")
            time.sleep(0.2)

    def stop_operator(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # graceful, as the kubelet stops a pod (releases the Lease)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_text().splitlines()
        return f"operator log ({self.log_path}), last {min(n, len(lines))} lines:\n" + "\n".join(lines[-n:])

    def forbidden_lines(self) -> list[str]:
        return [line for line in self.log_text().splitlines()[1:] if FORBIDDEN.search(line)]

    def check_operator(self) -> None:
        """Fail at once when the operator exited or an API call was refused."""
        bad = self.forbidden_lines()
        assert not bad, "the API server refused a call the operator made with the chart's RBAC:\n" + "\n".join(bad[:10])
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the operator exited with {self.proc.returncode}\n{self.log_tail()}")


@pytest.fixture
def release_factory(chart, prereqs, crd_before, tmp_path):  # crd_before: looked at before any install
    made: list[Release] = []

    def make(values: dict[str, Any], tag: str) -> Release:
        r = Release(chart, prereqs, tmp_path, values, tag)
        made.append(r)
        return r

    yield make
    for r in made:
        r.cleanup_stacks()
        r.stop_operator()
    for r in made:
        r.uninstall()


def base_values() -> dict[str, Any]:
    # The emulator's endpoint goes through the chart (the Deployment's AWS_ENDPOINT_URL env);
    # everything else is the chart's default: 2 replicas, leader election on, cluster id discovered.
    return {"operator": {"aws": {"endpointUrl": os.environ["AWS_ENDPOINT_URL"]}}}


# ---------------------------------------------------------------- stacks


def stack_manifest(namespace: str, name: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "imagestack.dev/v1alpha1",
        "kind": "ImageOptimizationStack",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "environment": "dev",
            "deletionPolicy": "Delete",
            "buckets": {"emptyOnDelete": True},
            "writeOutputsTo": {"configMapName": f"{name}-outputs"},
        },
    })


def create_namespace(ns: str) -> None:
    kubectl("create", "namespace", ns)


def get_stack(ns: str, name: str) -> dict[str, Any] | None:
    return kget("imagestack", name, "-n", ns)


def is_ready(s: dict[str, Any]) -> bool:
    st = s.get("status") or {}
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions", []))
    return ready and st.get("observedGeneration") == s["metadata"].get("generation")


def wait_ready(rel: Release, ns: str, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + READY_TIMEOUT
    last = None
    while True:
        rel.check_operator()
        last = get_stack(ns, name)
        if last is not None and is_ready(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"stack {ns}/{name} not Ready within {READY_TIMEOUT} s; status: "
                                 f"{json.dumps((last or {}).get('status'), indent=1)}\n{rel.log_tail()}")
        time.sleep(0.5)


def delete_and_wait_gone(rel: Release, ns: str, name: str) -> None:
    kubectl("delete", "imagestack", name, "-n", ns, "--wait=false")
    deadline = time.monotonic() + DELETE_TIMEOUT
    while True:
        rel.check_operator()
        s = get_stack(ns, name)
        if s is None:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"stack {ns}/{name} still exists {DELETE_TIMEOUT} s after delete "
                                 f"(finalizers {s['metadata'].get('finalizers')}); status: "
                                 f"{json.dumps(s.get('status'), indent=1)}\n{rel.log_tail()}")
        time.sleep(0.5)


def assert_events(rel: Release, ns: str, name: str) -> None:
    """The operator's Events: `kubectl get events` and `kubectl describe` show them, with reason and action."""
    events = json.loads(kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    ours = [e for e in events
            if e["involvedObject"].get("kind") == "ImageOptimizationStack" and e["involvedObject"].get("name") == name]
    assert ours, f"no Events about {ns}/{name} (the operator publishes them under the chart's RBAC)\n{rel.log_tail()}"
    reasons = {e["reason"] for e in ours}
    assert "Created" in reasons, f"no Created event: {sorted(reasons)}"
    assert "OutputsPublished" in reasons, f"no OutputsPublished event: {sorted(reasons)}"
    assert {e.get("action") for e in ours} == {"Reconcile"}, [(e["reason"], e.get("action")) for e in ours]
    assert {e.get("reportingComponent") for e in ours} == {"imagestack-operator"}, [e.get("reportingComponent") for e in ours]
    assert all(e.get("reportingInstance", "").startswith(rel.pod_name) for e in ours), [e.get("reportingInstance") for e in ours]
    table = kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}").stdout
    assert re.search(r"Normal\s+Created\s+imageoptimizationstack/" + re.escape(name) + r"\s", table, re.IGNORECASE), table
    described = kubectl("describe", "imagestack", name, "-n", ns).stdout
    events_section = described.split("\nEvents:", 1)[-1]
    assert re.search(r"Normal\s+Created\s+.*imagestack-operator", events_section), described
    assert re.search(r"Normal\s+OutputsPublished\s+.*imagestack-operator", events_section), described


def assert_reconciled(rel: Release, ns: str, name: str) -> None:
    s = wait_ready(rel, ns, name)
    assert FINALIZER in s["metadata"].get("finalizers", []), s["metadata"]
    outputs = s["status"].get("outputs") or {}
    assert outputs.get("uploadBucket"), outputs
    cm = kget("configmap", f"{name}-outputs", "-n", ns)
    assert cm is not None, "the outputs ConfigMap was not written (configmaps get/create under the chart's RBAC)"
    assert outputs["uploadBucket"] in json.dumps(cm.get("data", {})), cm.get("data")
    assert_events(rel, ns, name)
    # The Lease of the chart's leader election, held by this "pod".
    lease = kget("lease", rel.lease_name(), "-n", rel.namespace)
    assert lease is not None, "no leader-election Lease in the release namespace"
    assert lease["spec"].get("holderIdentity", "").startswith(rel.pod_name), lease["spec"]


def assert_installed_like_rendered(rel: Release, values: dict[str, Any]) -> None:
    """The Deployment stored in the API server carries the args the chart renders (nothing lost on install)."""
    want = Rendered(rel.chart.render(values, name=rel.name, namespace=rel.namespace)).container()
    got = rel.container()
    assert got["args"] == want["args"]

    def env(c: dict[str, Any]) -> list[tuple[str, str]]:  # the server defaults fieldRef.apiVersion
        return [(e["name"], e.get("value") or e["valueFrom"]["fieldRef"]["fieldPath"]) for e in c.get("env", [])]

    assert env(got) == env(want)


def assert_crd_installed(crd_before: bool) -> None:
    """The CRD is there, Established, with the chart's schema. On a fresh API server nothing but the
    chart's crds/ can have created it (Helm installs crds/ only when the CRD is absent; other suites
    may have applied the same file before, which test_crds.py keeps byte-identical)."""
    crd = kget(f"crd/{CRD_NAME}")
    assert crd is not None, "the chart did not install the CRD (crds/)"
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"]), crd["status"]
    chart_crd = yaml.safe_load(CHART_CRD.read_text())
    want = {v["name"]: v["schema"]["openAPIV3Schema"] for v in chart_crd["spec"]["versions"]}
    got = {v["name"]: v["schema"]["openAPIV3Schema"] for v in crd["spec"]["versions"]}
    assert got == want, "the CRD in the API server differs from the chart's crds/ (stale? run sync-crds.sh)"


# ---------------------------------------------------------------- the tests


def test_cluster_wide_install_reconciles_under_the_chart_rbac(release_factory, crd_before):
    values = base_values()
    rel = release_factory(values, "cluster")
    apps = f"ise2e-{rel.sfx}-apps"
    create_namespace(apps)
    rel.install()
    assert_crd_installed(crd_before)
    assert_installed_like_rendered(rel, values)
    # Cluster-wide: a ClusterRole (+ binding), no namespaced Role of that name.
    assert kget("clusterrole", rel.fullname) is not None
    assert kget("clusterrolebinding", rel.fullname) is not None
    assert kget("clusterrole", f"{rel.fullname}-cluster-id") is not None
    args = rel.container()["args"]
    assert not any(a.startswith("--namespace") for a in args), args
    assert "--leader-election=true" in args, args
    # A cluster-wide operator reconciles every stack of the cluster: refuse to run where stacks of
    # others exist (another test's leftovers, or a real cluster's current context) rather than add
    # finalizers to them and write emulator outputs into their status.
    foreign = [f"{s['metadata']['namespace']}/{s['metadata']['name']}"
               for s in json.loads(kubectl("get", "imagestacks", "--all-namespaces", "-o", "json").stdout)["items"]]
    assert not foreign, ("the API server already holds stacks this test did not create, which a cluster-wide "
                         f"operator would reconcile: {foreign[:10]}; run it against a dedicated API server (or ./scripts/down first)")

    rel.start_operator()
    name = "photos"
    rel.apply_stack(apps, name)
    assert_reconciled(rel, apps, name)
    delete_and_wait_gone(rel, apps, name)
    assert kget("configmap", f"{name}-outputs", "-n", apps) is None, "the outputs ConfigMap outlived its stack"
    rel.check_operator()


def test_watch_namespace_install_ignores_other_namespaces(release_factory, crd_before):
    sfx = short_id()
    watched, other = f"ise2e-{sfx}-watched", f"ise2e-{sfx}-other"
    values = base_values()
    values["operator"]["watchNamespace"] = watched
    rel = release_factory(values, "watch")
    create_namespace(watched)
    create_namespace(other)
    rel.install()
    assert_crd_installed(crd_before)
    assert_installed_like_rendered(rel, values)
    # One namespace: a Role (+ binding) there; the only ClusterRole is the kube-system `get`.
    assert kget("role", rel.fullname, "-n", watched) is not None
    assert kget("rolebinding", rel.fullname, "-n", watched) is not None
    assert kget("clusterrole", rel.fullname) is None
    assert kget("clusterrole", f"{rel.fullname}-cluster-id") is not None
    assert f"--namespace={watched}" in rel.container()["args"]

    rel.start_operator()
    ignored, name = "elsewhere", "photos"
    rel.apply_stack(other, ignored)
    rel.apply_stack(watched, name)
    assert_reconciled(rel, watched, name)
    # The other namespace's stack stays untouched: no finalizer, no status, no Events, no ConfigMap.
    deadline = time.monotonic() + IGNORED_FOR
    while time.monotonic() < deadline:
        rel.check_operator()
        s = get_stack(other, ignored)
        assert s is not None
        assert not s["metadata"].get("finalizers"), f"a stack outside watchNamespace got a finalizer: {s['metadata']}"
        assert not s.get("status"), f"a stack outside watchNamespace got a status: {s['status']}"
        time.sleep(0.5)
    events = json.loads(kubectl("get", "events", "-n", other, "-o", "json").stdout)["items"]
    assert not events, [(e["reason"], e.get("message")) for e in events]
    assert kget("configmap", f"{ignored}-outputs", "-n", other) is None

    delete_and_wait_gone(rel, watched, name)
    kubectl("delete", "imagestack", ignored, "-n", other, "--wait=true", "--timeout=30s")
    rel.check_operator()
