"""deploy/k8s: rendered by kustomize, valid for a pinned Kubernetes, clean for a policy scanner, tied to the code.

The real tools read the manifests: ``kubectl kustomize`` renders them (kustomize v5, built into
kubectl; no cluster needed), kubernetes-validate checks every object against the Kubernetes
1.32 schemas (strict: an unknown field is an error) and checkov runs its Kubernetes policies
offline. The tests then pin what the code fixes: the probe paths and ports, the variable names,
the image's user, and a grace period that covers the drain.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from apps.common.probe_paths import LIVEZ, METRICS, PROBE_PATHS, READYZ
from config import env
from config.env import VARIABLES
from harness.project import ROOT, Server, http_get, project_env

pytestmark = pytest.mark.slow

K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = {"base": K8S / "base", "production": K8S / "overlays" / "production"}
KUBERNETES_VERSION = "1.32.0"  # the schemas the manifests must satisfy (kubectl here is 1.32)
CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"  # `make checkov` (its own lock)
DECLARED = {variable.name for variable in VARIABLES}
# Skipped policy checks, each with its reason in an annotation on the resource and in docs/scaling.md.
SKIPPED_CHECKS = {
    ("CKV_K8S_35", "Deployment.django-service.web"),
    ("CKV_K8S_35", "Deployment.django-service.worker"),
    ("CKV_K8S_35", "Job.django-service.migrate"),
    ("CKV_K8S_9", "Deployment.django-service.worker"),
}
GUNICORN_GRACEFUL_TIMEOUT_SETTING = "graceful_timeout"  # as gunicorn --print-config names it


def render(kustomization: Path) -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed; .ci/run requires it")
    done = subprocess.run([kubectl, "kustomize", str(kustomization)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module", params=sorted(KUSTOMIZATIONS))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render(KUSTOMIZATIONS[request.param])) if doc]


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render(KUSTOMIZATIONS["production"])) if doc]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(render(KUSTOMIZATIONS["base"])) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]


def container(docs: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    (only,) = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return only


def config_map(docs: list[dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = find(docs, "ConfigMap", "django-service-config")["data"]
    return data


# --- the tools --------------------------------------------------------------------------------


def test_every_object_is_valid_for_the_pinned_kubernetes(rendered: list[dict[str, Any]]) -> None:
    assert {doc["kind"] for doc in rendered} >= {
        "ConfigMap",
        "Deployment",
        "Job",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
    }
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_is_not_a_formality(production: list[dict[str, Any]]) -> None:
    """A misspelled field (which the API server would drop without a word) fails strict validation."""
    web = json.loads(json.dumps(find(production, "Deployment", "web")))
    web_container = web["spec"]["template"]["spec"]["containers"][0]
    web_container["readinesProbe"] = web_container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBERNETES_VERSION, strict=True)


def test_the_policy_scanner_finds_nothing_unexplained(tmp_path: Path) -> None:
    if not CHECKOV.exists():
        pytest.skip("checkov has its own virtualenv: `make checkov` (.ci/run does it)")
    manifest = tmp_path / "production.yaml"
    manifest.write_text(render(KUSTOMIZATIONS["production"]))
    done = subprocess.run(
        [str(CHECKOV), "--file", str(manifest), "--framework", "kubernetes", "--output", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    report = json.loads(done.stdout)
    results = report["results"]
    failed = [(check["check_id"], check["resource"]) for check in results["failed_checks"]]
    assert failed == [], done.stdout[-4000:]
    assert report["summary"]["passed"] > 100
    skipped = {(check["check_id"], check["resource"]) for check in results["skipped_checks"]}
    assert skipped == SKIPPED_CHECKS
    scaling = (ROOT / "docs" / "scaling.md").read_text()
    assert all(check_id in scaling for check_id, _ in skipped), "docs/scaling.md explains every skipped check"
    assert done.returncode == 0


# --- tied to the code -------------------------------------------------------------------------


def test_probe_paths_are_the_project_s(production: list[dict[str, Any]]) -> None:
    web = container(production, "web")
    assert web["startupProbe"]["httpGet"]["path"] == "/" + LIVEZ
    assert web["livenessProbe"]["httpGet"]["path"] == "/" + LIVEZ
    assert web["readinessProbe"]["httpGet"]["path"] == "/" + READYZ
    for _, spec in pod_specs(production):
        for each in spec["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if "httpGet" in each.get(probe, {}):
                    assert each[probe]["httpGet"]["path"].lstrip("/") in PROBE_PATHS


def test_ports_are_the_configured_ones(production: list[dict[str, Any]]) -> None:
    settings = config_map(production)
    web = container(production, "web")
    ports = {port["name"]: port["containerPort"] for port in web["ports"]}
    assert ports == {"http": int(settings["PORT"]), "probes": int(settings["PROBE_PORT"])}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert web[probe]["httpGet"]["port"] == "probes"
    service = find(production, "Service", "web")
    assert [port["targetPort"] for port in service["spec"]["ports"]] == ["http"]
    # Prometheus' annotation discovery scrapes /metrics where the probes are answered.
    annotations = find(production, "Deployment", "web")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/" + METRICS
    assert annotations["prometheus.io/port"] == settings["PROBE_PORT"]


def test_the_probes_answer_where_the_manifest_points(
    production: list[dict[str, Any]], base: list[dict[str, Any]]
) -> None:
    """A real gunicorn with the ConfigMap's settings answers every web probe, and the scrape, on the probe port."""
    settings = config_map(production)
    token = find(base, "Secret", "django-service-secrets")["stringData"]["METRICS_TOKEN"]
    probe_port = Server(project_env()).port  # a free port standing in for the pod's PROBE_PORT
    overrides = {name: value for name, value in settings.items() if name not in ("DJANGO_ALLOWED_HOSTS", "PORT")}
    overrides["DRAIN_SECONDS"] = "0"  # the test's own stop needs no drain
    overrides |= {"PROBE_PORT": str(probe_port), "DATABASE_POOLER": "none", "METRICS_TOKEN": token}
    server = Server(project_env(False, **overrides))
    web = container(production, "web")
    annotations = find(production, "Deployment", "web")["spec"]["template"]["metadata"]["annotations"]
    with server:
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            url = f"http://127.0.0.1:{probe_port}{web[probe]['httpGet']['path']}"
            assert http_get(url, timeout=web[probe]["timeoutSeconds"] + 5).status == 200
        scrape = http_get(
            f"http://127.0.0.1:{probe_port}{annotations['prometheus.io/path']}", {"Authorization": f"Bearer {token}"}
        )
        assert scrape.status == 200
        assert "health_check_up" in scrape.body.decode()


def test_every_variable_named_is_declared(rendered: list[dict[str, Any]]) -> None:
    named: set[str] = set()
    for doc in rendered:
        if doc["kind"] == "ConfigMap":
            named |= set(doc["data"])
        if doc["kind"] == "Secret":
            named |= set(doc.get("stringData", {})) | set(doc.get("data", {}))
    for _, spec in pod_specs(rendered):
        for each in spec["containers"]:
            named |= {variable["name"] for variable in each.get("env", [])}
            assert {source_kind for source in each["envFrom"] for source_kind in source} <= {
                "configMapRef",
                "secretRef",
            }
    assert named - DECLARED == set(), "named in deploy/k8s but not declared in config/env.py"


def test_the_examples_are_a_valid_production_environment() -> None:
    """The ConfigMap and the example Secret, read by the app's own rules (config/env.py)."""
    base = [doc for doc in yaml.safe_load_all(render(KUSTOMIZATIONS["base"])) if doc]
    production = [doc for doc in yaml.safe_load_all(render(KUSTOMIZATIONS["production"])) if doc]
    secret = find(base, "Secret", "django-service-secrets")["stringData"]
    assert not [doc for doc in production if doc["kind"] == "Secret"], "the example Secret never ships"
    for docs in (base, production):
        config = env.load({**config_map(docs), **secret})
        assert config.debug is False
    assert env.load({**config_map(production), **secret}).database_pooler == "pgbouncer"


def test_the_image_s_user_is_the_pods_user(rendered: list[dict[str, Any]]) -> None:
    structure = DockerfileParser(str(ROOT / "Dockerfile")).structure
    last_from = max(index for index, item in enumerate(structure) if item["instruction"] == "FROM")
    users = [item["value"] for item in structure[last_from:] if item["instruction"] == "USER"]
    uid, _, gid = users[-1].partition(":")
    for where, spec in pod_specs(rendered):
        assert spec["securityContext"]["runAsUser"] == int(uid), where
        assert spec["securityContext"]["runAsGroup"] == int(gid or uid), where
        for each in spec["containers"]:
            assert each["securityContext"]["runAsUser"] == int(uid), where


def test_every_pod_is_locked_down(rendered: list[dict[str, Any]]) -> None:
    for where, spec in pod_specs(rendered):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert spec["automountServiceAccountToken"] is False, where
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for each in spec["containers"]:
            context = each["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            (tmp,) = [mount for mount in each["volumeMounts"] if mount["mountPath"] == "/tmp"]
            assert "emptyDir" in volumes[tmp["name"]], where
            assert each["resources"]["requests"], where
            assert each["resources"]["limits"], where


def test_web_rolls_out_without_losing_capacity(production: list[dict[str, Any]]) -> None:
    web = find(production, "Deployment", "web")
    assert web["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = find(production, "HorizontalPodAutoscaler", "web")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
    pdb = find(production, "PodDisruptionBudget", "web")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= web["spec"]["selector"]["matchLabels"].items()


def test_the_grace_period_covers_the_drain_and_the_graceful_timeout(production: list[dict[str, Any]]) -> None:
    """SIGKILL must not cut a request that the drain still let in: gunicorn's own resolved settings."""
    printed = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "--print-config"],
        cwd=ROOT,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    settings = {
        name.strip(): value.strip()
        for name, _, value in (line.partition("=") for line in printed.stdout.splitlines())
        if value
    }
    graceful_timeout = float(settings[GUNICORN_GRACEFUL_TIMEOUT_SETTING])
    drain = float(config_map(production)["DRAIN_SECONDS"])
    grace = find(production, "Deployment", "web")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= drain + graceful_timeout + 2
