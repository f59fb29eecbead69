"""Render the chart with the real Helm engine (helm-python-sdk = Helm v4's Go SDK) and check the objects.

Every rendered object is also validated against the Kubernetes 1.33 OpenAPI schema (strict: unknown
fields fail), so a misspelt field in a template is caught here, not by a cluster.
"""

from __future__ import annotations

import pytest
import kubernetes_validate

import helm_python as helm

from conftest import CHART_DIR, NAMESPACE, RELEASE, REPO

FULLNAME = f"{RELEASE}-imagestack-operator"
SELECTOR = {
    "app.kubernetes.io/name": "imagestack-operator",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "operator",
}
KUBE_VERSION = "1.33"


def validate_k8s(objects):
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # not a Kubernetes API type; checked field by field below
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']} is not a valid {KUBE_VERSION} object: {e}") from e


def env_map(container):
    return {e["name"]: e for e in container.get("env", [])}


# ---------------------------------------------------------------- lint and metadata


def test_lint_strict_has_no_errors_or_warnings():
    report = helm.lint(str(CHART_DIR), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_chart_metadata_matches_the_workspace_version(chart):
    cargo = (REPO / "Cargo.toml").read_text()
    version = next(line.split('"')[1] for line in cargo.splitlines() if line.startswith("version = "))
    assert chart.metadata["appVersion"] == version, "appVersion should follow [workspace.package] version"
    assert chart.metadata["apiVersion"] == "v2"
    assert chart.schema is not None, "values.schema.json is loaded by Helm"


# ---------------------------------------------------------------- defaults


def test_default_render_objects(render):
    r = render()
    assert r.kinds() == sorted(
        [
            "ClusterRole",
            "ClusterRole",  # <fullname>-cluster-id: get on namespace kube-system
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    )
    validate_k8s(r.objects)
    for obj in r.objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


def test_default_deployment(render, chart):
    r = render()
    dep = r.one("Deployment", FULLNAME)
    spec = dep["spec"]
    pod = spec["template"]["spec"]
    c = r.container()
    assert spec["replicas"] == 2
    assert spec["selector"]["matchLabels"] == SELECTOR
    assert SELECTOR.items() <= spec["template"]["metadata"]["labels"].items()
    assert c["image"] == f"imagestack-operator:{chart.metadata['appVersion']}"
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["command"] == ["/usr/local/bin/operator"]
    assert c["args"] == [
        "run",
        "--metrics-addr=0.0.0.0:8080",
        "--resync-interval=10m",
        "--concurrency=4",
        "--log-format=json",
        "--leader-election=true",
        f"--leader-election-id={FULLNAME}",
        f"--leader-election-namespace={NAMESPACE}",
    ]
    env = env_map(c)
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert "AWS_ENDPOINT_URL" not in env
    assert pod["serviceAccountName"] == FULLNAME
    # probes on the metrics port
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # topology spread over hostname and zone, selecting exactly our pods
    tsc = pod["topologySpreadConstraints"]
    assert [t["topologyKey"] for t in tsc] == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    for t in tsc:
        assert t["labelSelector"]["matchLabels"] == SELECTOR
        assert t["maxSkew"] == 1 and t["whenUnsatisfiable"] == "ScheduleAnyway"
    assert "nodeSelector" not in pod and "tolerations" not in pod and "affinity" not in pod


def test_restricted_pod_security(render):
    """The defaults meet the 'restricted' Pod Security Standard, field by field."""
    r = render()
    pod = r.one("Deployment")["spec"]["template"]["spec"]
    c = r.container()
    psc, sc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in sc and "hostNetwork" not in pod and "hostPID" not in pod
    volume_kinds = {k for v in pod["volumes"] for k in v if k != "name"}
    assert volume_kinds <= {"emptyDir", "configMap", "secret", "projected", "downwardAPI", "persistentVolumeClaim", "ephemeral", "csi"}


def test_default_pdb_and_service(render):
    r = render()
    pdb = r.one("PodDisruptionBudget", FULLNAME)
    assert pdb["spec"]["selector"]["matchLabels"] == SELECTOR
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    svc = r.one("Service", f"{FULLNAME}-metrics")
    assert svc["spec"]["selector"] == SELECTOR
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]


# ---------------------------------------------------------------- RBAC least privilege


def rules_of(objs):
    """Every (apiGroup, resource, verb, resourceNames) granted by the given Roles/ClusterRoles."""
    out = set()
    for o in objs:
        for rule in o["rules"]:
            assert "nonResourceURLs" not in rule
            for g in rule["apiGroups"]:
                for res in rule["resources"]:
                    for v in rule["verbs"]:
                        assert "*" not in (g, res, v), f"wildcard in {o['kind']}/{o['metadata']['name']}: {rule}"
                        out.add((g, res, v, tuple(rule.get("resourceNames", ()))))
    return out


CR_RULES = {
    ("imagestack.dev", "imagestacks", v, ()) for v in ("get", "list", "watch", "patch", "update")
} | {("imagestack.dev", "imagestacks/status", v, ()) for v in ("get", "patch", "update")} | {
    ("imagestack.dev", "imagestacks/finalizers", "update", ()),
} | {(g, "events", v, ()) for g in ("", "events.k8s.io") for v in ("create", "patch")} | {
    ("", "configmaps", v, ()) for v in ("get", "create", "update", "delete")
}


# operator.clusterId empty: the operator reads the UID of the kube-system Namespace, and only that.
CLUSTER_ID_RULES = {("", "namespaces", "get", ("kube-system",))}
CLUSTER_ID_ROLE = f"{FULLNAME}-cluster-id"


def lease_rules(lease):
    return {
        ("coordination.k8s.io", "leases", "create", ()),
        ("coordination.k8s.io", "leases", "get", (lease,)),
        ("coordination.k8s.io", "leases", "update", (lease,)),
    }


def test_rbac_cluster_wide_is_exactly_least_privilege(render):
    r = render()
    cluster_role = r.one("ClusterRole", FULLNAME)
    assert rules_of([cluster_role]) == CR_RULES
    lease_role = r.one("Role", f"{FULLNAME}-leader-election")
    assert lease_role["metadata"]["namespace"] == NAMESPACE
    assert rules_of([lease_role]) == lease_rules(FULLNAME)
    id_role = r.one("ClusterRole", CLUSTER_ID_ROLE)
    assert rules_of([id_role]) == CLUSTER_ID_RULES
    for binding, role in (
        (r.one("ClusterRoleBinding", FULLNAME), cluster_role),
        (r.one("RoleBinding"), lease_role),
        (r.one("ClusterRoleBinding", CLUSTER_ID_ROLE), id_role),
    ):
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role["kind"], "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    # The whole chart grants nothing else.
    assert rules_of(r.of_kind("ClusterRole") + r.of_kind("Role")) == CR_RULES | lease_rules(FULLNAME) | CLUSTER_ID_RULES
    assert len(r.of_kind("ClusterRoleBinding")) == 2 and len(r.of_kind("RoleBinding")) == 1


def test_rbac_single_namespace_uses_roles_only(render):
    r = render({"operator": {"watchNamespace": "team-a"}})
    # The only cluster-scoped grant is get on namespace kube-system (a Role cannot grant a Namespace).
    assert [o["metadata"]["name"] for o in r.of_kind("ClusterRole")] == [CLUSTER_ID_ROLE]
    assert [o["metadata"]["name"] for o in r.of_kind("ClusterRoleBinding")] == [CLUSTER_ID_ROLE]
    assert rules_of(r.of_kind("ClusterRole")) == CLUSTER_ID_RULES
    role = r.one("Role", FULLNAME)
    assert role["metadata"]["namespace"] == "team-a"
    assert rules_of([role]) == CR_RULES
    binding = r.one("RoleBinding", FULLNAME)
    assert binding["metadata"]["namespace"] == "team-a"
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]
    assert "--namespace=team-a" in r.args()
    assert rules_of(r.of_kind("ClusterRole") + r.of_kind("Role")) == CR_RULES | lease_rules(FULLNAME) | CLUSTER_ID_RULES
    validate_k8s(r.objects)


@pytest.mark.parametrize("operator", [{}, {"watchNamespace": "team-a"}], ids=["cluster-wide", "single-namespace"])
def test_cluster_id_discovery_grants_get_on_kube_system_only(render, operator):
    """clusterId empty: the operator reads the kube-system Namespace's UID; the chart grants exactly that."""
    r = render({"operator": operator, "serviceAccount": {"name": "ops-sa"}})
    role = r.one("ClusterRole", CLUSTER_ID_ROLE)
    assert "namespace" not in role["metadata"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "resourceNames": ["kube-system"], "verbs": ["get"]}]
    binding = r.one("ClusterRoleBinding", CLUSTER_ID_ROLE)
    assert "namespace" not in binding["metadata"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": CLUSTER_ID_ROLE}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ops-sa", "namespace": NAMESPACE}]
    # Nothing on CRDs (the operator's CRD-UID fallback is for test API servers only) nor on other namespaces.
    granted = rules_of(r.of_kind("ClusterRole") + r.of_kind("Role"))
    assert not any(g == "apiextensions.k8s.io" for g, *_ in granted), granted
    assert [rule for rule in granted if rule[1] == "namespaces"] == [("", "namespaces", "get", ("kube-system",))]
    assert not any(a.startswith("--cluster-id") for a in r.args())
    validate_k8s(r.objects)


@pytest.mark.parametrize("operator", [{}, {"watchNamespace": "team-a"}], ids=["cluster-wide", "single-namespace"])
@pytest.mark.parametrize("cluster_id", ["prod-eu-1", "arn:aws:eks:eu-west-1:123456789012:cluster/prod", "a_b.c+d=e@f"])
def test_explicit_cluster_id_is_passed_and_needs_no_namespace_rights(render, operator, cluster_id):
    r = render({"operator": {**operator, "clusterId": cluster_id}})
    assert r.args().count(f"--cluster-id={cluster_id}") == 1, r.args()
    assert not any(a.startswith("--cluster-id") and a != f"--cluster-id={cluster_id}" for a in r.args())
    names = [o["metadata"]["name"] for o in r.of_kind("ClusterRole") + r.of_kind("ClusterRoleBinding")]
    assert CLUSTER_ID_ROLE not in names, names
    granted = rules_of(r.of_kind("ClusterRole") + r.of_kind("Role"))
    assert not any(res == "namespaces" for _, res, *_ in granted), granted
    assert granted == CR_RULES | lease_rules(FULLNAME)
    if operator:
        assert r.of_kind("ClusterRole") == [] and r.of_kind("ClusterRoleBinding") == []
    validate_k8s(r.objects)


def test_rbac_and_service_account_can_be_disabled(render):
    r = render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "ops-sa"}})
    assert not {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "ServiceAccount"} & set(r.kinds())
    assert r.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ops-sa"


def test_existing_service_account_needs_a_name(render):
    with pytest.raises(helm.HelmError, match="serviceAccount.name is required"):
        render({"serviceAccount": {"create": False}})


# ---------------------------------------------------------------- non-default values

NON_DEFAULT = {
    "replicaCount": 3,
    "image": {"repository": "registry.example.com:5000/platform/imagestack-operator", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "fullnameOverride": "stacks",
    "operator": {
        "watchNamespace": "media",
        "clusterId": "prod-eu-west-1",
        "resyncInterval": "1h30m",
        "concurrency": 16,
        "logFormat": "text",
        "logLevel": "info,imagestack_operator=debug",
        "leaderElection": {"enabled": True, "leaseName": "stacks-leader"},
        "aws": {"region": "eu-west-1", "endpointUrl": "https://localstack.localstack.svc:4566"},
        "extraArgs": ["--processor-artifact-dir=/opt/custom"],
    },
    "extraEnv": [{"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "id"}}}],
    "extraEnvFrom": [{"secretRef": {"name": "imagestack-aws"}}],
    "extraVolumes": [{"name": "ca", "configMap": {"name": "emulator-ca"}}],
    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/emulator-ca", "readOnly": True}],
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/imagestack"}},
    "podAnnotations": {"example.com/team": "media"},
    "podLabels": {"team": "media"},
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
    "nodeSelector": {"kubernetes.io/arch": "arm64"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "platform", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["platform"]}]}]}}},
    "priorityClassName": "system-cluster-critical",
    "topologySpread": {"whenUnsatisfiable": "DoNotSchedule", "topologyKeys": ["kubernetes.io/hostname"]},
    "podDisruptionBudget": {"maxUnavailable": None, "minAvailable": "50%"},
    "metrics": {
        "port": 9090,
        "service": {"port": 80, "annotations": {"prometheus.io/scrape": "true"}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "interval": "15s"},
    },
    "commonLabels": {"cost-center": "1234"},
}


def test_non_default_values(render):
    r = render(NON_DEFAULT)
    validate_k8s(r.objects)
    dep = r.one("Deployment", "stacks")
    pod = dep["spec"]["template"]["spec"]
    c = r.container()
    assert dep["spec"]["replicas"] == 3
    assert c["image"] == "registry.example.com:5000/platform/imagestack-operator:1.2.3"
    assert c["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert c["args"] == [
        "run",
        "--metrics-addr=0.0.0.0:9090",
        "--resync-interval=1h30m",
        "--concurrency=16",
        "--log-format=text",
        "--log-level=info,imagestack_operator=debug",
        "--namespace=media",
        "--cluster-id=prod-eu-west-1",
        "--leader-election=true",
        "--leader-election-id=stacks-leader",
        f"--leader-election-namespace={NAMESPACE}",
        "--aws-region=eu-west-1",
        "--processor-artifact-dir=/opt/custom",
    ]
    env = env_map(c)
    assert env["AWS_ENDPOINT_URL"]["value"] == "https://localstack.localstack.svc:4566"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "aws", "key": "id"}
    assert c["envFrom"] == [{"secretRef": {"name": "imagestack-aws"}}]
    assert {"name": "ca", "mountPath": "/etc/emulator-ca", "readOnly": True} in c["volumeMounts"]
    assert {"name": "ca", "configMap": {"name": "emulator-ca"}} in pod["volumes"]
    assert c["resources"]["limits"] == {"cpu": "1", "memory": "512Mi"}
    assert c["ports"][0]["containerPort"] == 9090
    assert pod["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert [(t["topologyKey"], t["whenUnsatisfiable"]) for t in pod["topologySpreadConstraints"]] == [
        ("kubernetes.io/hostname", "DoNotSchedule")
    ]
    tmeta = dep["spec"]["template"]["metadata"]
    assert tmeta["annotations"] == {"example.com/team": "media"}
    assert tmeta["labels"]["team"] == "media" and tmeta["labels"]["cost-center"] == "1234"
    # IRSA
    sa = r.one("ServiceAccount", "stacks")
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/imagestack"}
    # RBAC follows the lease name and namespace; an explicit cluster id needs nothing cluster-wide
    assert rules_of(r.of_kind("Role")) == CR_RULES | lease_rules("stacks-leader")
    assert r.of_kind("ClusterRole") == [] and r.of_kind("ClusterRoleBinding") == []
    # PDB with minAvailable only
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == "50%" and "maxUnavailable" not in pdb["spec"]
    # Service and ServiceMonitor
    svc = r.one("Service", "stacks-metrics")
    assert svc["spec"]["ports"][0]["port"] == 80 and svc["spec"]["ports"][0]["targetPort"] == "metrics"
    assert svc["metadata"]["annotations"] == {"prometheus.io/scrape": "true"}
    sm = r.one("ServiceMonitor", "stacks")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["selector"]["matchLabels"] == SELECTOR
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert sm["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}]
    # Every label the ServiceMonitor selects is on the Service it must find.
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()


def test_digest_wins_over_tag(render):
    digest = "sha256:" + "ab" * 32
    r = render({"image": {"tag": "ignored", "digest": digest}})
    assert r.container()["image"] == f"imagestack-operator@{digest}"


def test_single_replica_without_leader_election(render):
    r = render({"replicaCount": 1, "operator": {"leaderElection": {"enabled": False}}})
    assert r.one("Deployment")["spec"]["replicas"] == 1
    assert "--leader-election=false" in r.args()
    assert not any(a.startswith("--leader-election-id") for a in r.args())
    assert r.of_kind("PodDisruptionBudget") == [], "a PDB on one replica would block node drains"
    # No lease rights without leader election.
    assert all(rule[0] != "coordination.k8s.io" for rule in rules_of(r.of_kind("ClusterRole") + r.of_kind("Role")))


def test_optional_objects_can_be_turned_off(render):
    r = render({"podDisruptionBudget": {"enabled": False}, "metrics": {"service": {"enabled": False}}, "topologySpread": {"enabled": False}})
    assert "PodDisruptionBudget" not in r.kinds() and "Service" not in r.kinds()
    assert "topologySpreadConstraints" not in r.one("Deployment")["spec"]["template"]["spec"]


def test_custom_topology_constraints_replace_the_defaults(render):
    custom = [{"maxSkew": 2, "topologyKey": "rack", "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"x": "y"}}}]
    r = render({"topologySpread": {"constraints": custom}})
    assert r.one("Deployment")["spec"]["template"]["spec"]["topologySpreadConstraints"] == custom


def test_names_are_truncated_to_63_characters(render):
    long_release = "a-very-long-release-name-that-goes-on-and-on-for-ever-and-ever"
    r = render(name=long_release)
    for o in r.objects:
        assert len(o["metadata"]["name"]) <= 63 + len("-leader-election"), o["metadata"]["name"]
    assert len(r.one("Deployment")["metadata"]["name"]) <= 63
    validate_k8s(r.objects)


def test_notes_mention_the_release_and_credentials(render):
    plain = render()
    assert f"deployment/{FULLNAME}" in plain.notes
    assert "create-pod-identity-association" in plain.notes  # no credentials configured: explain both ways
    irsa = render({"serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/x"}}})
    assert "create-pod-identity-association" not in irsa.notes


def test_notes_name_the_cluster_id(render):
    assert "Cluster id (AWS tag imagestack.dev/cluster): the UID of namespace kube-system." in render().notes
    named = render({"operator": {"clusterId": "prod-eu-1"}}).notes
    assert 'Cluster id (AWS tag imagestack.dev/cluster): "prod-eu-1".' in named and "kube-system" not in named


def test_client_install_dry_run_renders_like_helm_install(chart):
    """`helm install --dry-run=client` path: the release action (not only the engine) accepts the chart."""
    cfg = helm.Config(namespace=NAMESPACE, storage_driver="memory")
    try:
        rel = cfg.install(chart, RELEASE, {"replicaCount": 1, "operator": {"leaderElection": {"enabled": False}}}, dry_run="client")
    finally:
        cfg.close()
    assert rel["name"] == RELEASE and rel["namespace"] == NAMESPACE
    assert "kind: Deployment" in rel["manifest"]
    assert f"imagestack-operator {chart.metadata['appVersion']} is installed" in rel["notes"]
