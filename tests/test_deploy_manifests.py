"""deploy/kubernetes and deploy/compose.yaml, loaded offline so that a wrong field fails.

Every Kubernetes document is validated by the ``kubernetes`` client's models (the API's own
field names and types, unknown fields refused) and must read back unchanged, so a key in the
wrong case fails too. The overlay is built by ``kubectl kustomize`` where kubectl exists; the
checks that need no tool (its patches land on base resources and stay valid) run everywhere.
The settings the manifests and the compose file give are checked against the worker's own
:class:`config.settings.Settings`, and the layout against the Dockerfile and the worker's
HTTP server.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values
from kubernetes.client import models
from pydantic import BaseModel, ValidationError

from config.settings import Settings, env_name, load_settings, parse_listen
from tests.test_dockerfile import only, parse_dockerfile

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "kubernetes" / "base"
OVERLAY = DEPLOY / "kubernetes" / "overlays" / "example-account"
COMPOSE = DEPLOY / "compose.yaml"
KINDS: Mapping[tuple[str, str], type[BaseModel]] = {
    ("v1", "ConfigMap"): models.V1ConfigMap,
    ("v1", "Secret"): models.V1Secret,
    ("v1", "Service"): models.V1Service,
    ("apps/v1", "StatefulSet"): models.V1StatefulSet,
}
VARIABLES = frozenset(env_name(field) for field in Settings.model_fields)
PLACEHOLDER = re.compile(r"<[^<>]+>")
INSTANCE = "app.kubernetes.io/instance"
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a container's server listens on
SCRATCH = "/tmp"  # noqa: S108 - the pod's and the container's scratch mount
Document = dict[str, Any]


def validated(document: Document) -> BaseModel:
    """``document`` as its kind's model; fails on an unknown kind, field or type, and on a key
    the model takes only by another spelling (it must read back unchanged)."""
    kind = (document.get("apiVersion", ""), document.get("kind", ""))
    assert kind in KINDS, f"no model for {kind}: add it to KINDS"
    model = KINDS[kind].model_validate(document)
    assert model.model_dump(by_alias=True, exclude_none=True, mode="json") == document
    return model


def load(path: Path) -> list[Document]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def kustomization(folder: Path) -> Document:
    (document,) = load(folder / "kustomization.yaml")
    return document


def resources(folder: Path) -> list[Document]:
    """The documents a kustomization lists, as they are in their files."""
    return [doc for name in kustomization(folder)["resources"] for doc in load(folder / name)]


def key(document: Document) -> tuple[str, str]:
    return document["kind"], document["metadata"]["name"]


def merged(base: Any, patch: Any) -> Any:
    """A strategic-merge patch of maps only (what the overlay's patches are)."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{name: merged(base.get(name), value) for name, value in patch.items()}}
    return patch


def unknown_variables(names: Iterable[str]) -> list[str]:
    """The names that are not a variable the worker reads (``SLA_METRIC`` for SLA_METRICS)."""
    return sorted(name for name in names if name not in VARIABLES)


def settings_from(values: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The worker's settings from these variables alone, read as the worker reads them; a
    placeholder becomes a value of the right shape, since the templates hold no secret."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, "x" * 32 if PLACEHOLDER.fullmatch(value) else value)
    return load_settings(env_file=None)


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.skip("no kubectl here to run kustomize; the overlay's patches are checked anyway")
    return found


def built(folder: Path) -> list[Document]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def one(documents: list[Document], kind: str) -> Document:
    (found,) = [document for document in documents if document["kind"] == kind]
    return found


# --- the validator itself ----------------------------------------------------------------------
def test_a_misspelled_field_a_wrong_type_or_a_snake_case_key_fails() -> None:
    statefulset = one(resources(BASE), "StatefulSet")
    validated(statefulset)
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    for field, value in (
        ("securityContext", {"runAsNonRot": True}),
        ("ports", [{"containerPort": "8080"}]),
    ):
        broken = deepcopy(statefulset)
        broken["spec"]["template"]["spec"]["containers"] = [{**container, field: value}]
        with pytest.raises(ValidationError):
            validated(broken)
    snake = deepcopy(statefulset)
    snake["spec"]["service_name"] = snake["spec"].pop("serviceName")
    with pytest.raises(AssertionError):
        validated(snake)


# --- the files as they are -----------------------------------------------------------------------
def test_every_base_resource_is_a_valid_object_of_its_kind() -> None:
    documents = resources(BASE)
    assert sorted(document["kind"] for document in documents) == sorted(kind for _, kind in KINDS)
    for document in documents:
        validated(document)


def test_the_overlays_patches_land_on_base_resources_and_keep_them_valid() -> None:
    overlay = kustomization(OVERLAY)
    assert overlay["resources"] == ["../../base"]
    assert overlay["nameSuffix"] or overlay.get("namePrefix")
    base = {key(document): document for document in resources(BASE)}
    patches = [load(OVERLAY / patch["path"]) for patch in overlay["patches"]]
    assert patches
    for (patch,) in patches:
        assert key(patch) in base, f"{key(patch)} patches nothing in the base"
        validated(merged(base[key(patch)], patch))
    (label,) = overlay["labels"]
    assert label["includeSelectors"] is True
    assert INSTANCE in label["pairs"]
    assert [image["name"] for image in overlay["images"]] == [
        container["image"]
        for container in one(list(base.values()), "StatefulSet")["spec"]["template"]["spec"][
            "containers"
        ]
    ]


def test_secrets_hold_placeholders_only() -> None:
    secrets = [d for d in resources(BASE) if d["kind"] == "Secret"]
    secrets += [d for p in kustomization(OVERLAY)["patches"] for d in load(OVERLAY / p["path"])]
    secrets = [document for document in secrets if document["kind"] == "Secret"]
    assert len(secrets) == 2
    for secret in secrets:
        assert "data" not in secret
        for name, value in secret["stringData"].items():
            assert PLACEHOLDER.fullmatch(value), f"{name} holds a value, not a placeholder"


# --- what kustomize builds ---------------------------------------------------------------------
@pytest.mark.parametrize("folder", [BASE, OVERLAY], ids=["base", "example-account"])
def test_the_build_is_valid_and_its_references_resolve(folder: Path) -> None:
    documents = built(folder)
    for document in documents:
        validated(document)
    names = {key(document) for document in documents}
    statefulset = one(documents, "StatefulSet")
    spec = statefulset["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    for source in container["envFrom"]:
        ((kind, reference),) = source.items()
        expected = "ConfigMap" if kind == "configMapRef" else "Secret"
        assert (expected, reference["name"]) in names, f"{kind} {reference['name']} is not built"
    assert ("Service", spec["serviceName"]) in names
    service = one(documents, "Service")
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    port_names = {port["name"] for port in container["ports"]}
    assert all(port["targetPort"] in port_names for port in service["spec"]["ports"])


def test_the_overlay_names_labels_and_configures_its_own_account(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, overlay = built(BASE), built(OVERLAY)
    suffix = kustomization(OVERLAY)["nameSuffix"]
    assert {name + suffix for _, name in map(key, base)} == {name for _, name in map(key, overlay)}
    statefulset = one(overlay, "StatefulSet")
    account = statefulset["spec"]["template"]["metadata"]["labels"][INSTANCE]
    assert statefulset["spec"]["selector"]["matchLabels"][INSTANCE] == account
    assert one(overlay, "Service")["spec"]["selector"][INSTANCE] == account
    (image,) = kustomization(OVERLAY)["images"]
    (container,) = statefulset["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{image['newName']}:{image['newTag']}"
    values = one(overlay, "ConfigMap")["data"] | one(overlay, "Secret")["stringData"]
    settings = settings_from(values, monkeypatch)
    assert settings.account_configured
    assert settings.sla_pipeline
    assert settings.webhooks_on


# --- the worker's side of the manifests ------------------------------------------------------
def test_the_settings_are_the_workers_variables_with_valid_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    documents = resources(BASE)
    overlay = [d for p in kustomization(OVERLAY)["patches"] for d in load(OVERLAY / p["path"])]
    for document in documents + overlay:
        values = document.get("data") or document.get("stringData") or {}
        if document["kind"] in {"ConfigMap", "Secret"}:
            assert unknown_variables(values) == [], document["metadata"]["name"]
    config = one(documents, "ConfigMap")["data"]
    settings = settings_from(config, monkeypatch)
    assert settings.sla_metrics
    assert parse_listen(settings.sla_http_listen) == (ALL_INTERFACES, 8080)
    assert unknown_variables(["SLA_METRIC", "SLA_METRICS"]) == ["SLA_METRIC"]


def test_the_pod_runs_the_worker_as_the_image_user_with_its_state_on_the_claim() -> None:
    statefulset = one(resources(BASE), "StatefulSet")
    config = one(resources(BASE), "ConfigMap")["data"]
    spec = statefulset["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    dockerfile = parse_dockerfile((ROOT / "Dockerfile").read_text())
    user, group = (int(part) for part in only(dockerfile, "USER").arguments.split(":"))
    # One worker per account, as the image's user, on a read-only root without capabilities.
    assert spec["replicas"] == 1
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (
        user,
        group,
        group,
    )
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["enableServiceLinks"] is False  # no AMO_SLA_* variables from Services
    # SLA_STATE_DIR is the claim's mount; /tmp is a scratch volume.
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    (claim,) = spec["volumeClaimTemplates"]
    assert mounts[config["SLA_STATE_DIR"]] == claim["metadata"]["name"]
    assert {"name": mounts[SCRATCH], "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    # The probes ask /healthz on the port SLA_HTTP_LISTEN opens.
    (http,) = container["ports"]
    assert http["containerPort"] == parse_listen(config["SLA_HTTP_LISTEN"])[1]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": http["name"]}
    resources_ = container["resources"]
    assert resources_["requests"] == {"cpu": "100m", "memory": "256Mi"}
    assert resources_["limits"] == {"memory": "512Mi"}


# --- compose -----------------------------------------------------------------------------------
def test_compose_gives_the_worker_its_variables_and_prometheus_its_files(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    worker, prometheus = compose["services"]["amo-sla"], compose["services"]["prometheus"]
    environment = worker["environment"]
    assert unknown_variables(environment) == []
    (env_file,) = worker["env_file"]
    example = dotenv_values(DEPLOY / f"{env_file}.example")
    assert unknown_variables(example) == []
    # The filled-in env file holds the token: git and the image's build context skip it.
    assert f"deploy/{env_file}" in (ROOT / ".gitignore").read_text().splitlines()
    assert "deploy" in (ROOT / ".dockerignore").read_text().splitlines()
    settings = settings_from(environment, monkeypatch)
    assert settings.sla_metrics
    port = parse_listen(settings.sla_http_listen)[1]
    assert f"{settings.sla_state_dir}" in {mount.split(":")[1] for mount in worker["volumes"]}
    assert worker["read_only"] is True
    assert worker["tmpfs"] == [SCRATCH]
    assert worker["cap_drop"] == ["ALL"]
    assert worker["build"]["context"] == ".."
    assert (COMPOSE.parent / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    # Prometheus gets the config and the alerts, and scrapes the worker's service and port.
    mounted = {mount.split(":")[1]: mount.split(":")[0] for mount in prometheus["volumes"]}
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config_file = COMPOSE.parent / mounted["/etc/prometheus/prometheus.yml"]
    config = yaml.safe_load(config_file.read_text())
    for rule_file in config["rule_files"]:
        assert (COMPOSE.parent / mounted[f"/etc/prometheus/{rule_file}"]).is_file()
    (job,) = config["scrape_configs"]
    assert job["static_configs"] == [{"targets": [f"amo-sla:{port}"]}]
