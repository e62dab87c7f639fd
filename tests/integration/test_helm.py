"""The Helm chart (helm/syncd), rendered for real with Helm's Go SDK and validated.

No cluster is available, so the chart is checked as far as it can be offline:

- it renders and lints cleanly for every value set in helm/syncd/ci/ (minimal, Vault with
  Kubernetes auth, AWS IRSA, 3 replicas, everything on);
- every rendered object validates against the Kubernetes OpenAPI schemas (strict: unknown
  fields fail) for the oldest supported and a recent Kubernetes version; the
  prometheus-operator CRDs, which those schemas do not have, get a structural check here;
- the rendered syncd.toml is accepted by `syncd check`;
- every metric name in the alert rules and the dashboard is exported by a real daemon's
  /metrics (scraped from `syncd run` against the fake IdP), so no alert watches a series
  that does not exist;
- values.schema.json rejects wrong types, unknown keys and plaintext secrets.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version
from prometheus_client.parser import text_string_to_metric_families

from syncd.audit import TargetReport
from syncd.config import load_config
from syncd.probe import ProbeMetrics
from tests.peers.fake_idp import FakeIdP, ok
from tests.peers.servers import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "helm" / "syncd"
CI_DIR = CHART_DIR / "ci"
RELEASE = "syncd"
NAMESPACE = "payments"
VALUE_SETS = sorted(p.name.removesuffix("-values.yaml") for p in CI_DIR.glob("*-values.yaml"))
# The chart's kubeVersion floor, and the newest Kubernetes the validator ships schemas for.
KUBE_VERSIONS = ("1.29", ".".join(latest_version().split(".")[:2]))
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
ALERTS = {
    "SyncdTokenExpiringSoon": "#syncdtokenexpiringsoon",
    "SyncdRotationFailing": "#syncdrotationfailing",
    "SyncdTargetStale": "#syncdtargetstale",
    "SyncdAbsent": "#syncdabsent",
}
SYNCD = Path(sys.executable).parent / "syncd"

assert {"minimal", "vault", "aws-irsa", "replicas", "full"} <= set(VALUE_SETS), VALUE_SETS


# --------------------------------------------------------------------------- rendering


def load_values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CI_DIR / f"{name}-values.yaml").read_text(encoding="utf-8"))
    return values


@pytest.fixture(scope="module")
def chart() -> Iterator[helm.Chart]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


def render(chart: helm.Chart, values: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Template path -> the objects it rendered (NOTES.txt under its own key, as text)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path, text in chart.render(values, name=RELEASE, namespace=NAMESPACE).items():
        if path.endswith("NOTES.txt"):
            out[path] = [{"text": text}]
        else:
            out[path] = [doc for doc in yaml.safe_load_all(text) if doc]
    return out


@pytest.fixture(scope="module")
def rendered(chart: helm.Chart) -> dict[str, dict[str, list[dict[str, Any]]]]:
    return {name: render(chart, load_values(name)) for name in VALUE_SETS}


def objects(manifests: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [doc for path, docs in manifests.items() if not path.endswith("NOTES.txt") for doc in docs]


def one(manifests: dict[str, list[dict[str, Any]]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [o for o in objects(manifests) if o["kind"] == kind and o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def notes(manifests: dict[str, list[dict[str, Any]]]) -> str:
    return str(next(docs[0]["text"] for path, docs in manifests.items() if path.endswith("NOTES.txt")))


def syncd_toml(manifests: dict[str, list[dict[str, Any]]]) -> str:
    cms = [o for o in objects(manifests) if o["kind"] == "ConfigMap" and "syncd.toml" in o.get("data", {})]
    assert len(cms) == 1
    return str(cms[0]["data"]["syncd.toml"])


def workload(manifests: dict[str, list[dict[str, Any]]], name_suffix: str = "") -> dict[str, Any]:
    """The daemon's pods: a Deployment for one replica, a StatefulSet for more (not the probe's Deployment)."""
    found = [
        o
        for o in objects(manifests)
        if o["kind"] in ("Deployment", "StatefulSet")
        and o["metadata"]["name"].endswith(name_suffix)
        and not o["metadata"]["name"].endswith("-probe")
    ]
    assert len(found) == 1, f"expected one workload, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def service(manifests: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The daemon's Service (not the StatefulSet's headless one, nor the probe's)."""
    found = [
        o
        for o in objects(manifests)
        if o["kind"] == "Service" and not o["metadata"]["name"].endswith(("-headless", "-probe"))
    ]
    assert len(found) == 1, f"expected one Service, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def names(manifests: dict[str, list[dict[str, Any]]], kind: str) -> list[str]:
    return [o["metadata"]["name"] for o in objects(manifests) if o["kind"] == kind]


def pod_spec(manifests: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    spec: dict[str, Any] = workload(manifests)["spec"]["template"]["spec"]
    return spec


def container(manifests: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    containers = pod_spec(manifests)["containers"]
    assert [c["name"] for c in containers] == ["syncd"]
    main: dict[str, Any] = containers[0]
    return main


def render_error(chart: helm.Chart, values: dict[str, Any]) -> str:
    with pytest.raises(helm.HelmError) as info:
        chart.render(values, name=RELEASE, namespace=NAMESPACE)
    return str(info.value)


# --------------------------------------------------------------------------- lint and schemas


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_has_no_errors_or_warnings(value_set):
    report = helm.lint(CHART_DIR, load_values(value_set), namespace=NAMESPACE, kube_version="v1.29.0")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_validates_against_kubernetes_schemas(rendered, value_set):
    validated = []
    for obj in objects(rendered[value_set]):
        if obj["kind"] in CRD_KINDS:
            check_crd_structure(obj)
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for {version}: {path}: {exc.message}")
        validated.append(obj["kind"])
    assert {"ConfigMap", "Service", "ServiceAccount"} <= set(validated)
    assert {"Deployment", "StatefulSet"} & set(validated)


def check_crd_structure(obj: dict[str, Any]) -> None:
    """The parts of the prometheus-operator CRDs the chart relies on (no OpenAPI schema is available)."""
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    meta = obj["metadata"]
    assert meta["name"] and meta["namespace"] == NAMESPACE
    assert all(isinstance(v, str) for v in meta.get("labels", {}).values())
    spec = obj["spec"]
    if obj["kind"] == "ServiceMonitor":
        assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
        assert spec["selector"]["matchLabels"]
        assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {
                "port", "path", "scheme", "interval", "scrapeTimeout", "honorLabels", "relabelings",
                "metricRelabelings",
            }  # fmt: skip
            assert endpoint["port"] == "http" and endpoint["path"] == "/metrics"
            for key in ("interval", "scrapeTimeout"):
                assert re.fullmatch(r"([0-9]+(ms|s|m|h))+", endpoint[key]), endpoint[key]
    else:
        assert set(spec) == {"groups"}
        names = set()
        for group in spec["groups"]:
            assert set(group) <= {"name", "rules", "interval"}
            assert group["name"] not in names
            names.add(group["name"])
            for rule in group["rules"]:
                assert ("alert" in rule) != ("record" in rule), rule
                assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}, rule
                assert isinstance(rule["expr"], str) and rule["expr"].strip()
                if "for" in rule:
                    assert re.fullmatch(r"([0-9]+(ms|s|m|h|d|w|y))+", rule["for"]), rule["for"]
                for key in ("labels", "annotations"):
                    assert all(isinstance(v, str) for v in rule.get(key, {}).values()), rule.get(key)


# --------------------------------------------------------------------------- syncd.toml


def store_type_installed(store_type: str) -> bool:
    eps = {ep.name: ep for ep in entry_points(group="syncd.stores")}
    if store_type not in eps:
        return False
    module = eps[store_type].value.partition(":")[0]
    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rendered_config_passes_syncd_check(rendered, value_set, tmp_path):
    path = tmp_path / "syncd.toml"
    path.write_text(syncd_toml(rendered[value_set]), encoding="utf-8")
    os.chmod(path, 0o644)  # as mounted from the ConfigMap
    # The schema and cross-checks, in-process: needs no store implementation.
    config = load_config(path)
    assert config.daemon.listen.endswith(f":{load_values(value_set).get('server', {}).get('port', 9440)}")
    missing = sorted({s.type for s in config.stores.values() if not store_type_installed(s.type)})
    assert not missing, f"store type(s) {', '.join(missing)} used by ci/{value_set}-values.yaml have no implementation"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true")
    result = subprocess.run(
        # --offline: the secrets and volumes the config names exist only inside the pod.
        [str(SYNCD), "check", "--offline", "-c", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, f"syncd check exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "ok: configuration is valid" in result.stdout


def test_toml_rendering_of_strings_numbers_and_tables(chart):
    tricky = 'a "quoted" \\ back\\slash\ttab\nnewline <&> é ☃'
    values = load_values("minimal")
    values["config"]["defaults"] = {"refresh_at": 0.75, "jitter": 0, "min_remaining": "45s", "retry_max": 120}
    values["config"]["stores"]["vault"] = {
        "type": "vault",
        "url": "https://vault:8200",
        "kv_version": 1,
        "max_versions": 3,
        "tls_skip_verify": False,
        "auth": {"method": "approle", "role_id": "r", "secret_id": {"existingSecret": "approle", "key": "id"}},
    }
    values["config"]["credentials"][0].update(
        {
            "extra_params": {"audience": tricky, "odd key.x": "v"},
            "scopes": ["a:b", "c"],
            "targets": [{"store": "local", "key": "calm.json", "mode": "0640"}, {"store": "vault", "key": "k/calm"}],
        }
    )
    doc = tomllib.loads(syncd_toml(render(chart, values)))
    cred = doc["credentials"][0]
    assert cred["extra_params"] == {"audience": tricky, "odd key.x": "v"}
    assert cred["client_secret"] == {"file": "/etc/syncd/secrets/vgs-calm/client-secret"}
    assert cred["targets"] == [
        {"store": "local", "key": "calm.json", "mode": "0640"},
        {"store": "vault", "key": "k/calm"},
    ]
    assert doc["defaults"] == {"refresh_at": 0.75, "jitter": 0, "min_remaining": "45s", "retry_max": 120}
    assert isinstance(doc["defaults"]["retry_max"], int)
    vault = doc["stores"]["vault"]
    assert vault["kv_version"] == 1 and isinstance(vault["kv_version"], int)
    assert vault["tls_skip_verify"] is False
    assert vault["auth"] == {
        "method": "approle",
        "role_id": "r",
        "secret_id": {"file": "/etc/syncd/secrets/approle/id"},
    }
    assert doc["daemon"]["listen"] == "0.0.0.0:9440"


def test_null_leaves_a_key_out(chart):
    values = load_values("minimal")
    values["config"]["daemon"] = {"log_format": None}
    doc = tomllib.loads(syncd_toml(render(chart, values)))
    assert "log_format" not in doc["daemon"]
    assert doc["daemon"]["log_level"] == "info"


def test_ipv6_listen_address(rendered):
    doc = tomllib.loads(syncd_toml(rendered["full"]))
    assert doc["daemon"]["listen"] == "[::]:9550"
    assert load_config(data=doc).daemon.host_port == ("::", 9550)


# --------------------------------------------------------------------------- the Deployment


def test_defaults_without_a_credential_fail_with_a_clear_message(chart):
    message = render_error(chart, {})
    assert "config.credentials is empty" in message


def test_unknown_store_in_a_target_fails_at_render(chart):
    values = load_values("minimal")
    values["config"]["credentials"][0]["targets"][0]["store"] = "lcoal"
    message = render_error(chart, values)
    assert 'unknown store "lcoal"' in message and "local" in message


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pod_security(rendered, value_set):
    spec = pod_spec(rendered[value_set])
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] == 10001 and pod_sc["fsGroup"] == 10001
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(rendered[value_set])["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["enableServiceLinks"] is False
    # Writable places are explicit volumes: /tmp and each file store directory.
    mounts = {m["mountPath"]: m for m in container(rendered[value_set])["volumeMounts"]}
    assert "/tmp" in mounts
    # Only file stores write locally; ci/minimal and ci/full have one, the AWS and Vault sets none.
    stores = tomllib.loads(syncd_toml(rendered[value_set]))["stores"].values()
    for directory in [store["directory"] for store in stores if store["type"] == "file"]:
        assert directory in mounts and not mounts[directory].get("readOnly")


def test_probes_use_the_http_port(rendered):
    c = container(rendered["minimal"])
    assert c["ports"] == [{"name": "http", "containerPort": 9440, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # The startup probe gates liveness while the first reads and mints run (5 minutes), on /livez:
    # an IdP outage at start-up must not turn into a restart loop.
    startup = c["startupProbe"]
    assert startup["httpGet"] == {"path": "/livez", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300
    full = container(rendered["full"])
    assert full["ports"][0]["containerPort"] == 9550
    svc = service(rendered["full"])
    assert svc["spec"]["ports"][0]["targetPort"] == "http" and svc["spec"]["publishNotReadyAddresses"] is True


def test_config_path_and_args(rendered):
    c = container(rendered["minimal"])
    assert c["args"] == ["run", "--config", "/etc/syncd/config/syncd.toml"]
    assert {"name": "SYNCD_CONFIG", "value": "/etc/syncd/config/syncd.toml"} in c["env"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["config"] == {"name": "config", "mountPath": "/etc/syncd/config", "readOnly": True}
    assert "subPath" not in mounts["config"]  # a subPath mount would never see ConfigMap updates


def test_termination_grace_period_covers_the_drain(rendered, chart):
    assert pod_spec(rendered["minimal"])["terminationGracePeriodSeconds"] == 10 + 10
    assert pod_spec(rendered["full"])["terminationGracePeriodSeconds"] == 90 + 10  # drain_timeout = "1m30s"
    values = load_values("minimal")
    values["config"]["daemon"] = {"drain_timeout": 2.5}
    values["terminationGracePeriodMargin"] = 5
    assert pod_spec(render(chart, values))["terminationGracePeriodSeconds"] == 3 + 5


def test_checksum_annotation_follows_the_config_only(chart):
    def checksum(values: dict[str, Any]) -> str:
        annotations = workload(render(chart, values))["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    base = load_values("minimal")
    first = checksum(base)
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert checksum(copy.deepcopy(base)) == first, "rendering is deterministic"
    changed = copy.deepcopy(base)
    changed["config"]["daemon"] = {"log_level": "debug"}
    assert checksum(changed) != first
    changed = copy.deepcopy(base)
    changed["config"]["credentials"][0]["scopes"] = ["cards:read"]
    assert checksum(changed) != first
    unrelated = copy.deepcopy(base)
    unrelated["resources"] = {"requests": {"cpu": "100m", "memory": "64Mi"}}
    assert checksum(unrelated) == first, "only a config change should roll the pods"


def test_secrets_are_mounted_from_existing_secrets_only(rendered):
    manifests = rendered["vault"]
    kinds = {o["kind"] for o in objects(manifests)}
    assert "Secret" not in kinds, "the chart never creates a Secret"
    spec = pod_spec(manifests)
    secret_volumes = [v for v in spec["volumes"] if "secret" in v]
    # Two credentials use two keys of one Secret: one volume holding exactly those keys.
    assert len(secret_volumes) == 1
    volume = secret_volumes[0]
    assert volume["secret"]["secretName"] == "vgs-credentials"
    assert volume["secret"]["defaultMode"] == 0o440
    assert [i["key"] for i in volume["secret"]["items"]] == ["calm-client-secret", "card-client-secret"]
    mount = next(m for m in container(manifests)["volumeMounts"] if m["name"] == volume["name"])
    assert mount["readOnly"] is True and "subPath" not in mount  # subPath would freeze a rotated secret
    doc = tomllib.loads(syncd_toml(manifests))
    for cred in doc["credentials"]:
        file = Path(cred["client_secret"]["file"])
        assert file.parent == Path(mount["mountPath"])
        assert file.name in {i["path"] for i in volume["secret"]["items"]}
    # The Vault CA comes from a ConfigMap, mounted the same way.
    ca = Path(doc["stores"]["vault"]["ca_cert"])
    cm_volume = next(v for v in spec["volumes"] if "configMap" in v and v["configMap"]["name"] == "vault-ca")
    cm_mount = next(m for m in container(manifests)["volumeMounts"] if m["name"] == cm_volume["name"])
    assert ca == Path(cm_mount["mountPath"]) / "ca.crt"


def test_service_account_file_from_a_secret(rendered):
    manifests = rendered["aws-irsa"]
    cred = tomllib.loads(syncd_toml(manifests))["credentials"][0]
    assert cred["service_account_file"] == "/etc/syncd/secrets/vgs-calm-sa/credentials.yaml"
    assert "client_secret" not in cred and "client_id" not in cred
    volume = next(v for v in pod_spec(manifests)["volumes"] if "secret" in v)
    assert volume["secret"]["secretName"] == "vgs-calm-sa"


def test_vault_kubernetes_auth_mounts_the_service_account_token(rendered):
    manifests = rendered["vault"]
    assert pod_spec(manifests)["automountServiceAccountToken"] is True
    assert one(manifests, "ServiceAccount")["automountServiceAccountToken"] is True
    auth = tomllib.loads(syncd_toml(manifests))["stores"]["vault"]["auth"]
    assert auth == {"method": "kubernetes", "role": "syncd"}  # jwt_file: syncd's default, the automounted token


def test_irsa_annotation_and_no_api_token(rendered):
    manifests = rendered["aws-irsa"]
    sa = one(manifests, "ServiceAccount")
    assert sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/syncd"}
    assert sa["automountServiceAccountToken"] is False
    assert pod_spec(manifests)["automountServiceAccountToken"] is False
    assert pod_spec(manifests)["serviceAccountName"] == sa["metadata"]["name"]
    for name in ("minimal", "full"):  # no kubernetes auth with the default token path
        assert pod_spec(rendered[name])["automountServiceAccountToken"] is False


def test_single_replica_has_no_pdb_nor_spread(rendered):
    manifests = rendered["minimal"]
    assert one(manifests, "Deployment")["spec"]["replicas"] == 1
    assert not [o for o in objects(manifests) if o["kind"] == "PodDisruptionBudget"]
    assert "topologySpreadConstraints" not in pod_spec(manifests)
    strategy = one(manifests, "Deployment")["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_replicas_get_a_statefulset_a_pdb_and_topology_spread(rendered):
    manifests = rendered["replicas"]
    assert not [o for o in objects(manifests) if o["kind"] == "Deployment"]
    sts = one(manifests, "StatefulSet")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    assert "strategy" not in sts["spec"]  # a Deployment field
    # The daemon takes its ordinal from the pod name (the hostname) and the count from the chart.
    env = {e["name"]: e.get("value") for e in container(manifests)["env"]}
    assert env["SYNCD_DAEMON__REPLICAS"] == "3" and "SYNCD_DAEMON__REPLICA" not in env
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    headless = one(manifests, "Service", "-headless")
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"] == f"{RELEASE}-headless"
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= pod_labels.items()
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    spread = pod_spec(manifests)["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in spread} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for constraint in spread:
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
        assert constraint["matchLabelKeys"] == ["controller-revision-hash"]  # a StatefulSet pod's revision label
    assert "replicaCount is 3: a StatefulSet" in notes(manifests)
    # minAvailable, when set, replaces maxUnavailable.
    full_pdb = one(rendered["full"], "PodDisruptionBudget")["spec"]
    assert full_pdb["minAvailable"] == 1 and "maxUnavailable" not in full_pdb


def test_single_replica_stays_a_deployment(rendered):
    manifests = rendered["minimal"]
    assert not [o for o in objects(manifests) if o["kind"] == "StatefulSet"]
    assert names(manifests, "Service") == [RELEASE]  # no headless Service
    env = {e["name"] for e in container(manifests)["env"]}
    assert "SYNCD_DAEMON__REPLICAS" not in env


def test_replicas_with_secrets_manager_need_no_acknowledgement(chart):
    """The plan's versions per day no longer multiply by the replica count."""
    values = load_values("aws-irsa")
    values["replicaCount"] = 2
    assert workload(render(chart, values))["spec"]["replicas"] == 2
    values["allowSecretsManagerWithReplicas"] = True  # the old switch is gone
    assert "allowSecretsManagerWithReplicas" in render_error(chart, values)


def test_replica_count_and_ordinal_belong_to_the_chart(chart):
    """replicas follows replicaCount and replica each pod's name: set by hand they could disagree."""
    for key in ("replicas", "replica"):
        values = load_values("replicas")
        values["config"]["daemon"] = {key: 1}
        assert f"'{key}' not allowed" in render_error(chart, values)
    values = load_values("replicas")
    values["config"]["daemon"] = {"takeover_delay": "20s"}
    assert 'takeover_delay = "20s"' in syncd_toml(render(chart, values))
    values["config"]["daemon"] = {"takeover_delay": "soon"}
    assert "takeover_delay" in render_error(chart, values)


def test_selectors_match_the_pods(rendered):
    for name in VALUE_SETS:
        manifests = rendered[name]
        pods = workload(manifests)
        labels = pods["spec"]["template"]["metadata"]["labels"]
        assert pods["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert service(manifests)["spec"]["selector"].items() <= labels.items()
        test_pods = [o for o in objects(manifests) if o["kind"] == "Pod"]
        for pod in test_pods:  # the `helm test` pod must not join the Service
            assert not service(manifests)["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_optional_objects(rendered):
    kinds = lambda name: sorted(o["kind"] for o in objects(rendered[name]))  # noqa: E731
    assert kinds("minimal") == ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"]
    assert kinds("full") == [
        "ConfigMap", "ConfigMap", "NetworkPolicy", "Pod", "PodDisruptionBudget", "PrometheusRule",
        "Service", "Service", "ServiceAccount", "ServiceMonitor", "StatefulSet",
    ]  # fmt: skip


def test_test_hook_runs_syncd_status(rendered):
    pod = one(rendered["minimal"], "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    c = pod["spec"]["containers"][0]
    assert c["args"] == ["status", "--url", f"http://syncd.{NAMESPACE}.svc:9440"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True


def test_notes_explain_how_to_check_rotation(rendered):
    text = notes(rendered["minimal"])
    assert f"kubectl -n {NAMESPACE} exec deploy/syncd -- syncd status --url http://127.0.0.1:9440" in text
    assert f"kubectl -n {NAMESPACE} port-forward svc/syncd 9440:9440" in text
    assert "vgs-calm: client-secret" in text
    assert "WARNING" not in text
    full = notes(rendered["full"])
    assert f"kubectl -n {NAMESPACE} rollout status statefulset/syncd-tokens" in full
    assert f"kubectl -n {NAMESPACE} exec pod/syncd-tokens-0 -- syncd status" in full


def test_notes_say_a_file_store_on_an_emptydir_is_pod_local(chart, rendered):
    """A file store on the default emptyDir is readable only inside the pod: NOTES says so, a PVC is not flagged."""
    assert "pod-local emptyDir" not in notes(rendered["full"])  # its file store has a PersistentVolumeClaim
    values = load_values("full")
    values.pop("fileStoreVolumes")
    text = notes(render(chart, values))
    assert "File stores on a pod-local emptyDir: local (/var/run/syncd)." in text
    assert "each pod keeps its own copy" in text  # full runs several replicas
    values["replicaCount"] = 1
    assert "each pod keeps its own copy" not in notes(render(chart, values))


def test_network_policy(rendered):
    policy = one(rendered["full"], "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["podSelector"]["matchLabels"] == service(rendered["full"])["spec"]["selector"]
    ingress = policy["ingress"]
    assert len(ingress) == 1 and ingress[0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    sources = ingress[0]["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in sources
    assert any(
        s.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "test" for s in sources
    )
    egress = policy["egress"]
    dns = egress[0]
    assert {p["port"] for p in dns["ports"]} == {53} and {p["protocol"] for p in dns["ports"]} == {"UDP", "TCP"}
    assert egress[1] == {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}],
        "ports": [{"port": 443, "protocol": "TCP"}],
    }
    assert egress[2]["ports"] == [{"port": 8200, "protocol": "TCP"}]
    assert egress[3]["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "vault"}


def test_grafana_dashboard_configmap(rendered):
    cm = one(rendered["full"], "ConfigMap", "-dashboard")
    assert cm["metadata"]["namespace"] == "monitoring"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Security"}
    dashboard = json.loads(cm["data"]["syncd.json"])
    assert dashboard["uid"] == "syncd-overview"
    assert dashboard == json.loads((CHART_DIR / "dashboards" / "syncd.json").read_text(encoding="utf-8"))
    panel_ids = [p["id"] for p in dashboard["panels"]]
    assert len(panel_ids) == len(set(panel_ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], panel["title"]


# --------------------------------------------------------------------------- alerts


def alert_rules(manifests: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    rule = one(manifests, "PrometheusRule")
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r}


def test_prometheus_rule_alerts(rendered, chart):
    rules = alert_rules(rendered["full"])
    assert set(ALERTS) <= set(rules)
    for name, anchor in ALERTS.items():
        rule = rules[name]
        assert rule["annotations"]["runbook_url"] == f"https://docs.example.com/syncd/operations{anchor}"
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert rule["labels"]["team"] == "payments" and rule["labels"]["severity"] in {"warning", "critical"}
        # Every series is this release's: job and namespace matchers on each selector.
        for selector in re.findall(r"\{([^}]*)\}", rule["expr"]):
            assert f'job="syncd-tokens",namespace="{NAMESPACE}"' in selector, rule["expr"]
    # Thresholds are fractions of the token lifetime (promtool cases in tests/alerts/).
    assert (
        "(0.2 * max by (namespace, job, credential) (last_over_time(syncd_token_lifetime_seconds{"
        in (rules["SyncdTokenExpiringSoon"]["expr"])
    )
    assert "[26h]" in rules["SyncdTargetStale"]["expr"]
    assert rules["SyncdTokenExpiringSoon"]["for"] == "30s"
    assert "syncd_consecutive_failures" in rules["SyncdRotationFailing"]["expr"]
    assert "for" not in rules["SyncdRotationFailing"]
    assert "(0.35 * max by" in rules["SyncdTargetStale"]["expr"]
    assert "max_over_time(up{" in rules["SyncdAbsent"]["expr"]
    # Prometheus templates survive Helm's templating.
    assert "{{ $labels.credential }}" in rules["SyncdRotationFailing"]["annotations"]["summary"]
    # Without a runbook base URL: the repository path of the operations guide.
    values = load_values("minimal")
    values["prometheusRule"] = {"enabled": True}
    default_rules = alert_rules(render(chart, values))
    assert default_rules["SyncdAbsent"]["annotations"]["runbook_url"] == "docs/operations.md#syncdabsent"
    assert "for" not in default_rules["SyncdTokenExpiringSoon"]


_PROMQL_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan", "atan2",
}  # fmt: skip


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (or a Grafana query using $variables).

    Drops strings (label values), label matchers, range/subquery brackets, grouping label
    lists and function names; what remains as identifiers are metric names.
    """
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)
    text = re.sub(r"\[[^\[\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$:])[A-Za-z_:][\w:]*(?!\w)", text):
        word = match.group(0)
        after = text[match.end() :].lstrip()
        if word.lower() in _PROMQL_KEYWORDS or after.startswith("("):
            continue
        names.add(word)
    return names


def test_promql_metric_name_extraction():
    expr = (
        'histogram_quantile(0.95, sum by (le, store) (rate(syncd_write_duration_seconds_bucket{job=~"$job"}'
        '[$__rate_interval]))) > on(credential) group_left syncd_x offset 5m or vector(0) and up{a="b(c)"} == 1e3'
    )
    assert promql_metric_names(expr) == {"syncd_write_duration_seconds_bucket", "syncd_x", "up"}
    assert promql_metric_names("label_values(syncd_build_info, namespace)") == {"syncd_build_info", "namespace"}


def dashboard_queries() -> list[str]:
    dashboard = json.loads((CHART_DIR / "dashboards" / "syncd.json").read_text(encoding="utf-8"))
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            # label_values(metric{...}, label): the metric only (the label is not a series).
            match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
            queries.append(match.group(1) if match else query)
    return queries


# Requests to the daemon never go through a proxy configured in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Series Prometheus itself creates for every scrape target.
PROMETHEUS_SYNTHETIC = {"up"}


@pytest.fixture
def running_daemon(chart: helm.Chart, fake_idp: FakeIdP, tmp_path: Path) -> Iterator[str]:
    """`syncd run` on a syncd.toml rendered by the chart, against the fake IdP; yields its base URL.

    The values are the minimal set, pointed at local paths: the client secret as a
    `{file: ...}` reference, the file store in tmp_path, the HTTP server on a free port.
    """
    fake_idp.default = ok(ttl=300)
    secret = tmp_path / "client.secret"
    secret.write_text("calm-secret\n", encoding="utf-8")
    secret.chmod(0o600)
    port = free_port()
    values = load_values("minimal")
    values["server"] = {"host": "127.0.0.1", "port": port}
    values["config"]["daemon"] = {"drain_timeout": "2s"}
    values["config"]["stores"]["local"]["directory"] = str(tmp_path / "out")
    cred = values["config"]["credentials"][0]
    cred.update(token_url=fake_idp.token_url, client_id="calm", client_secret={"file": str(secret)})
    config = tmp_path / "syncd.toml"
    config.write_text(syncd_toml(render(chart, values)), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_") and "proxy" not in k.lower()}
    log = (tmp_path / "syncd.log").open("w")
    proc = subprocess.Popen([str(SYNCD), "run", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"syncd exited {proc.returncode}:\n{(tmp_path / 'syncd.log').read_text()[-3000:]}")
            try:
                with _OPENER.open(f"{base}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"syncd not ready in 30 s:\n{(tmp_path / 'syncd.log').read_text()[-3000:]}")
            time.sleep(0.2)
        assert (tmp_path / "out" / "calm.json").exists()
        # The client secret reached the IdP through the rendered { file = ... } reference.
        assert fake_idp.requests[0].form["client_secret"] == "calm-secret"
        yield base
        # SIGTERM drains and exits 0 well within the chart's grace period (drain_timeout + margin).
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, (tmp_path / "syncd.log").read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def test_every_metric_in_alerts_and_dashboard_is_exported(running_daemon, rendered):
    with _OPENER.open(f"{running_daemon}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    exported = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    assert "syncd_mints_total" in exported and "syncd_mint_duration_seconds_bucket" in exported
    # What `syncd probe` serves (the same exporter code, fed one report of each status).
    probe = ProbeMetrics()
    probe.apply(
        [TargetReport("calm", "local:calm.json", "fresh", issued_at=1.0, expires_at=2.0, refresh_after=1.5)], 3.0
    )
    probe_exported = {s.name for f in text_string_to_metric_families(probe.render().decode()) for s in f.samples}
    assert "syncd_probe_target_expiry_timestamp_seconds" in probe_exported
    exported |= probe_exported

    rules = alert_rules(rendered["full"])
    used: dict[str, set[str]] = {}
    for name in ALERTS:
        used[f"alert {name}"] = promql_metric_names(rules[name]["expr"])
    for query in dashboard_queries():
        used.setdefault("dashboard", set()).update(promql_metric_names(query) - {"namespace", "job", "credential"})
    problems = []
    for where, names in used.items():
        unknown = sorted(names - exported - PROMETHEUS_SYNTHETIC)
        if not names:
            problems.append(f"{where}: no metric found")
        elif unknown:
            problems.append(f"{where} uses series that syncd does not export: {unknown}")
    assert not problems, "\n".join(problems)

    # The dashboard shows what the issue asks for.
    dashboard_names = used["dashboard"]
    for required in (
        "syncd_target_token_expiry_timestamp_seconds",  # remaining lifetime per credential/target
        "syncd_mints_total",
        "syncd_writes_total",  # mints and writes by outcome
        "syncd_mint_duration_seconds_bucket",
        "syncd_write_duration_seconds_bucket",  # mint and write latency
        "syncd_schedule_lateness_seconds_bucket",  # schedule lateness
        "syncd_probe_target_status",  # what the probe reads in the stores
    ):
        assert required in dashboard_names, required


def test_dashboard_shows_time_to_expiry_per_target_from_daemon_and_probe():
    """One panel, per credential and target, the stored token's time to expiry: both views."""
    dashboard = json.loads((CHART_DIR / "dashboards" / "syncd.json").read_text(encoding="utf-8"))
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    panels = [
        {
            promql_metric_names(t["expr"]).pop(): t["expr"]
            for t in p.get("targets", [])
            if len(promql_metric_names(t["expr"])) == 1
        }
        for p in dashboard["panels"]
    ]
    both = [
        p
        for p in panels
        if "syncd_target_token_expiry_timestamp_seconds" in p and "syncd_probe_target_expiry_timestamp_seconds" in p
    ]
    assert both, "no panel shows the daemon's and the probe's expiry together"
    for expr in both[0].values():
        assert expr.startswith("max by (credential, target) (") and expr.endswith(") - time()"), expr
    assert 'job=~"$probe_job"' in both[0]["syncd_probe_target_expiry_timestamp_seconds"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"namespace", "job", "probe_job", "credential"} <= variables


# --------------------------------------------------------------------------- values.schema.json


def test_schema_rejects_a_wrong_type(chart):
    message = render_error(chart, {**load_values("minimal"), "replicaCount": "three"})
    assert "/replicaCount" in message and "want integer" in message
    values = load_values("minimal")
    values["config"]["defaults"] = {"refresh_at": "half"}
    assert "/config/defaults/refresh_at" in render_error(chart, values)


def test_schema_rejects_unknown_keys(chart):
    assert "'replicaCont' not allowed" in render_error(chart, {**load_values("minimal"), "replicaCont": 3})
    values = load_values("minimal")
    values["config"]["defaults"] = {"refesh_at": 0.5}  # a typo syncd would also refuse
    message = render_error(chart, values)
    assert "/config/defaults" in message and "'refesh_at' not allowed" in message
    values = load_values("minimal")
    values["config"]["credentials"][0]["targets"][0]["slot"] = 2
    assert "'slot' not allowed" in render_error(chart, values)


def test_schema_rejects_a_plaintext_client_secret(chart):
    values = load_values("minimal")
    values["config"]["credentials"][0]["client_secret"] = "hunter2"
    message = render_error(chart, values)
    assert "/config/credentials/0/client_secret" in message


def test_schema_rejects_the_chart_owned_listen(chart):
    values = load_values("minimal")
    values["config"]["daemon"] = {"listen": "127.0.0.1:9440"}
    assert "'listen' not allowed" in render_error(chart, values)


def test_schema_rejects_a_relative_file_store_directory(chart):
    values = load_values("minimal")
    values["config"]["stores"]["local"]["directory"] = "tokens"
    assert "/config/stores/local" in render_error(chart, values)


def test_file_store_cannot_use_a_chart_directory(chart):
    values = load_values("minimal")
    values["config"]["stores"]["local"]["directory"] = "/etc/syncd/out"
    assert "is used by the chart" in render_error(chart, values)


def test_lint_reports_schema_errors():
    report = helm.lint(CHART_DIR, {**load_values("minimal"), "replicaCont": 3}, namespace=NAMESPACE)
    assert any("'replicaCont' not allowed" in e for e in report["errors"])


# --------------------------------------------------------------------------- syncd probe

PROBE_VALUES = {
    "enabled": True,
    "stores": {
        "vault": {
            "auth": {
                "method": "approle",
                "role_id": "probe-role",
                "secret_id": {"existingSecret": "vault-probe", "key": "secret-id"},
            }
        }
    },
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/syncd-read"}},
}


@pytest.fixture(scope="module")
def with_probe(chart: helm.Chart) -> dict[str, list[dict[str, Any]]]:
    values = load_values("full")
    values["probe"] = PROBE_VALUES
    return render(chart, values)


def test_probe_objects_validate(with_probe):
    probe_objects = with_probe["syncd/templates/probe.yaml"]
    assert sorted(o["kind"] for o in probe_objects) == [
        "ConfigMap", "Deployment", "Service", "ServiceAccount", "ServiceMonitor",
    ]  # fmt: skip
    for obj in probe_objects:
        assert obj["metadata"]["name"] == "syncd-tokens-probe"
        if obj["kind"] in CRD_KINDS:
            check_crd_structure(obj)
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)
    values = load_values("full")
    values["probe"] = PROBE_VALUES
    report = helm.lint(CHART_DIR, values, namespace=NAMESPACE, kube_version="v1.29.0")
    assert report["errors"] == [] and [m for m in report["messages"] if m["severity"] >= 2] == []


def test_probe_runs_with_its_own_identity_and_no_client_secret(with_probe, tmp_path):
    probe_objects = {o["kind"]: o for o in with_probe["syncd/templates/probe.yaml"]}
    spec = probe_objects["Deployment"]["spec"]["template"]["spec"]
    daemon_spec = workload(with_probe, "tokens")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "syncd-tokens-probe" != daemon_spec["serviceAccountName"]
    assert probe_objects["ServiceAccount"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        "syncd-read"
    )
    (probe,) = spec["containers"]
    assert probe["args"][0] == "probe"
    assert spec["securityContext"]["runAsNonRoot"] and probe["securityContext"]["readOnlyRootFilesystem"]
    # Only the stores' own references are mounted: none of the credentials' Secrets, and the
    # daemon's Vault secret_id is replaced by the probe's.
    secrets = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    assert secrets == {"vault-probe"}
    toml = probe_objects["ConfigMap"]["data"]["syncd.toml"]
    parsed = tomllib.loads(toml)
    assert {c["client_secret"]["env"] for c in parsed["credentials"]} == {"SYNCD_PROBE_READS_NO_CLIENT_SECRET"}
    assert "service_account_file" not in toml and "vgs-credentials" not in toml
    assert parsed["probe"]["listen"] == "[::]:9442"
    assert parsed["stores"]["vault"]["auth"]["role_id"] == "probe-role"
    # Same credentials and targets as the daemon.
    daemon = tomllib.loads(with_probe["syncd/templates/configmap.yaml"][0]["data"]["syncd.toml"])
    assert [(c["name"], c["targets"]) for c in parsed["credentials"]] == [
        (c["name"], c["targets"]) for c in daemon["credentials"]
    ]
    path = tmp_path / "probe.toml"
    path.write_text(toml, encoding="utf-8")
    config = load_config(path)  # what `syncd probe` loads: valid without any client secret
    assert config.probe.host_port == ("::", 9442)


def test_probe_and_daemon_services_select_their_own_pods(with_probe):
    probe_objects = {o["kind"]: o for o in with_probe["syncd/templates/probe.yaml"]}
    probe_pods = probe_objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    daemon_pods = workload(with_probe, "tokens")["spec"]["template"]["metadata"]["labels"]
    daemon_selector = one(with_probe, "Service", "tokens")["spec"]["selector"]
    probe_selector = probe_objects["Service"]["spec"]["selector"]
    assert probe_selector.items() <= probe_pods.items() and not probe_selector.items() <= daemon_pods.items()
    assert daemon_selector.items() <= daemon_pods.items() and not daemon_selector.items() <= probe_pods.items()


def test_alerts_use_the_probe_series_when_it_runs(with_probe):
    rules = alert_rules(with_probe)
    for name in ("SyncdTargetStale", "SyncdTokenExpiringSoon"):
        expr = rules[name]["expr"]
        assert 'syncd_probe_target_expiry_timestamp_seconds{job="syncd-tokens-probe",namespace="payments"}' in expr
        assert "syncd_probe_target_lifetime_seconds" in expr
        # The daemon's view only for targets the probe does not report.
        assert (
            "unless on (namespace, credential, target) max by (namespace, job, credential, target) (syncd_probe" in expr
        )
    # What only the daemon knows stays on the daemon's series.
    assert "syncd_probe" not in rules["SyncdRotationFailing"]["expr"] + rules["SyncdAbsent"]["expr"]


def test_client_auth_keys_and_the_projected_token(rendered, chart):
    """private_key and client_assertion are secret references in the TOML; the projected token is
    mounted where client_assertion points, with the IdP's audience; an empty audience fails the render."""
    manifests = rendered["client-auth"]
    creds = {c["name"]: c for c in tomllib.loads(syncd_toml(manifests))["credentials"]}
    assert creds["calm"]["private_key"] == {"file": "/etc/syncd/secrets/syncd-calm-key/tls.key"}
    assert creds["entra"]["client_assertion"] == {"file": "/var/run/secrets/tokens/idp"}
    assert creds["mtls"]["client_cert"] == "/etc/syncd/secrets/syncd-mtls/tls.crt"
    volume = next(v for v in pod_spec(manifests)["volumes"] if v["name"] == "workload-identity-token")
    source = volume["projected"]["sources"][0]["serviceAccountToken"]
    assert source == {"path": "idp", "audience": "api://AzureADTokenExchange", "expirationSeconds": 3600}
    mount = next(m for m in container(manifests)["volumeMounts"] if m["name"] == "workload-identity-token")
    assert mount == {"name": "workload-identity-token", "mountPath": "/var/run/secrets/tokens", "readOnly": True}
    values = load_values("client-auth")
    values["workloadIdentityToken"]["audience"] = ""
    assert "audience" in render_error(chart, values)
