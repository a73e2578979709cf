"""The Helm chart, checked offline: `helm lint`, `helm template`, the rendered manifests
validated against the Kubernetes schemas (kubernetes-validate ships them), and what the chart
promises about workers, probes and autoscaling. KEDA's ScaledObject is a custom resource
that kubernetes-validate has no schema for: it is checked field by field here instead."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "visionscaling"
HELM = Path(os.environ.get("VS_HELM", REPO / ".stack" / "bin" / "helm"))
K8S_VERSION = "1.33.0"


@pytest.fixture(scope="module")
def helm() -> Path:
    if not HELM.is_file():
        pytest.fail(f"helm not found at {HELM}: run VS_WITH_HELM=1 infra/install.sh (or set VS_HELM)", pytrace=False)
    return HELM


def render(helm: Path, *sets: str) -> list[dict]:
    args = [str(helm), "template", "vs", "./" + str(CHART.relative_to(REPO))]
    for s in sets:
        args += ["--set", s]
    res = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return [d for d in yaml.safe_load_all(res.stdout) if d]


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def test_helm_lint_passes(helm):
    res = subprocess.run(
        [str(helm), "lint", "./" + str(CHART.relative_to(REPO))], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_rendered_manifests_are_valid_kubernetes_objects(helm):
    import kubernetes_validate

    docs = render(helm, "producer.enabled=true", "reconcile.enabled=true")
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: see test_the_scaled_object_targets_the_workers_and_the_group
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 8


def test_the_reconciliation_is_off_by_default_and_lists_the_bucket_on_its_schedule(helm):
    assert "CronJob" not in by_kind(render(helm))
    (cron,) = by_kind(render(helm, "reconcile.enabled=true", "reconcile.schedule=*/30 * * * *"))["CronJob"]
    assert cron["spec"]["schedule"] == "*/30 * * * *" and cron["spec"]["concurrencyPolicy"] == "Forbid"
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "producer", "--from-bucket", "--only-missing"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_workers_stop_within_their_grace_period_and_probe_the_worker_itself(helm):
    kinds = by_kind(render(helm))
    worker = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("-worker"))
    pod = worker["spec"]["template"]["spec"]
    settings = next(d for d in kinds["ConfigMap"])["data"]
    assert pod["terminationGracePeriodSeconds"] > float(settings["SHUTDOWN_TIMEOUT_S"]) + 10
    container = pod["containers"][0]
    assert container["command"][:3] == ["faust", "-A", "consumer.app"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["ports"][0]["containerPort"] == int(settings["METRICS_PORT"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
    assert "replicas" not in worker["spec"]  # KEDA owns the count
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["DATABASE_URL"]["valueFrom"]
    assert not any("PASSWORD" in k for k in settings)  # credentials only in the Secret


def test_the_scaled_object_targets_the_workers_and_the_group(helm):
    kinds = by_kind(render(helm))
    (scaled,) = kinds["ScaledObject"]
    settings = kinds["ConfigMap"][0]["data"]
    worker = next(d for d in kinds["Deployment"] if d["metadata"]["name"].endswith("-worker"))
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert scaled["spec"]["maxReplicaCount"] <= int(settings["KAFKA_PARTITIONS"])
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == settings["FAUST_APP_ID"]
    assert trigger["metadata"]["topic"] == settings["KAFKA_TOPIC"]


def test_more_workers_than_partitions_is_refused(helm):
    res = subprocess.run(
        [
            str(helm),
            "template",
            "vs",
            "./" + str(CHART.relative_to(REPO)),
            "--set",
            "worker.autoscaling.maxReplicas=20",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0 and "must not exceed settings.KAFKA_PARTITIONS" in res.stderr


def test_the_migrate_job_makes_the_viewers_first_admin_from_the_secret(helm):
    docs = by_kind(render(helm, "secret.VIEWER_ADMIN_PASSWORD=a-long-password", "viewer.adminName=root-admin"))
    (job,) = [j for j in docs["Job"] if j["metadata"]["name"].endswith("-migrate")]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    script = container["command"][-1]
    assert script.startswith("python -m db migrate &&")
    assert "python -m viewer create-user root-admin --role admin --if-no-accounts" in script
    (password,) = [e for e in container["env"] if e["name"] == "VIEWER_PASSWORD"]
    assert password["valueFrom"]["secretKeyRef"]["key"] == "VIEWER_ADMIN_PASSWORD"  # never a literal
    (secret,) = docs["Secret"]
    assert secret["stringData"]["VIEWER_ADMIN_PASSWORD"] == "a-long-password"
    (viewer,) = [d for d in docs["Deployment"] if d["metadata"]["name"].endswith("-viewer")]
    assert "VIEWER_PASSWORD" not in str(viewer)  # only the job sees it


SECURE = (
    "settings.KAFKA_SECURITY_PROTOCOL=SASL_SSL",
    "settings.KAFKA_SASL_MECHANISM=SCRAM-SHA-512",
    "security.caSecret=vs-ca",
    "security.clientCertSecret=vs-client",
    "security.kafkaUsers.worker.username=worker",
    "security.kafkaUsers.producer.username=producer",
    "security.kafkaUsers.monitor.username=monitor",
    "worker.databaseUrlKey=WORKER_DATABASE_URL",
    "reconcile.databaseUrlKey=RECONCILE_DATABASE_URL",
    "producer.enabled=true",
    "reconcile.enabled=true",
)


def _containers(docs: list[dict]) -> dict[str, dict]:
    """Every pod's container by its object's name, with the pod spec beside it."""
    out = {}
    for d in docs:
        spec = d.get("spec", {})
        pod = spec.get("jobTemplate", {}).get("spec", spec).get("template", {}).get("spec")
        if pod:
            (container,) = pod["containers"]
            out[d["metadata"]["name"]] = {**container, "pod": pod}
    return out


def test_a_secured_cluster_gets_the_ca_client_certificate_and_each_components_own_principal(helm):
    import kubernetes_validate

    docs = render(helm, *SECURE)
    for doc in docs:
        if not doc["apiVersion"].startswith("keda.sh/"):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    expected_user = {"-worker": "worker", "-producer": "producer", "-reconcile": "producer", "-viewer": "monitor"}
    containers = _containers(docs)
    assert len(containers) == 5  # worker, viewer, migrate, producer, reconcile
    for name, c in containers.items():
        env = {e["name"]: e for e in c["env"]}
        assert env["KAFKA_SSL_CAFILE"]["value"] == env["S3_CA_BUNDLE"]["value"] == "/etc/visionscaling/ca/ca.crt"
        assert env["KAFKA_SSL_CERTFILE"]["value"] == "/etc/visionscaling/client/tls.crt"
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/etc/visionscaling/ca"]["readOnly"] and mounts["/etc/visionscaling/client"]["readOnly"]
        volumes = {v["name"]: v for v in c["pod"]["volumes"]}
        assert volumes["ca"]["secret"]["secretName"] == "vs-ca"
        assert volumes["client-cert"]["secret"]["secretName"] == "vs-client"
        user = next((u for part, u in expected_user.items() if part in name), None)
        if user:  # its own principal; its password a key of the secret, never a literal
            assert env["KAFKA_SASL_USERNAME"]["value"] == user
            key = env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"]
            assert key == f"KAFKA_SASL_PASSWORD_{user.upper()}"
        else:  # the migrate job: no principal of a component
            assert "KAFKA_SASL_USERNAME" not in env

    def database_key(part: str) -> str:
        container = next(c for n, c in containers.items() if part in n)
        return {e["name"]: e for e in container["env"]}["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"]

    assert database_key("-worker") == "WORKER_DATABASE_URL"
    assert database_key("-reconcile") == "RECONCILE_DATABASE_URL"  # it registers keys: not the producer's
    assert database_key("-producer") == "DATABASE_URL"

    kinds = by_kind(docs)
    (trigger,) = kinds["ScaledObject"][0]["spec"]["triggers"]
    assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
    (auth,) = kinds["TriggerAuthentication"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {r["parameter"]: r for r in auth["spec"]["secretTargetRef"]}
    assert refs["password"]["key"] == "KAFKA_SASL_PASSWORD_MONITOR" and refs["ca"]["name"] == "vs-ca"
    (user_secret,) = [s for s in kinds["Secret"] if s["metadata"]["name"] == refs["username"]["name"]]
    assert user_secret["stringData"]["username"] == "monitor"


def test_plaintext_values_render_no_security_pieces(helm):
    docs = render(helm)
    assert "TriggerAuthentication" not in by_kind(docs)
    for c in _containers(docs).values():
        assert not {"KAFKA_SSL_CAFILE", "KAFKA_SASL_USERNAME", "S3_CA_BUNDLE"} & {e["name"] for e in c["env"]}
        assert [m["mountPath"] for m in c["volumeMounts"]] == ["/tmp"]


def test_s3_can_keep_the_system_cas_beside_a_private_one(helm):
    for c in _containers(render(helm, *SECURE, "security.s3UsesCa=false")).values():
        env = {e["name"] for e in c["env"]}
        assert "KAFKA_SSL_CAFILE" in env and "S3_CA_BUNDLE" not in env
