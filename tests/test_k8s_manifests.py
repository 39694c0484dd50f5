"""The Kubernetes manifests (deploy/k8s) render, validate and match the code they run.

The kustomizations are rendered by `render` below, a small offline loader that supports only
what deploy/k8s uses (resources, namespace, images, replicas, strategic-merge patches by kind
and name); no PyPI package renders kustomize offline for Python 3.11 and no binary is
downloaded. Where `kubectl` is installed its built-in kustomize checks the loader.
Every object is then validated against the Kubernetes OpenAPI schemas that the
`kubernetes-validate` package ships (strict: unknown fields fail), with no network.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from fastapi.routing import APIRoute
from pydantic import AliasChoices, SecretStr

from api.routers import health
from schemas.settings import Settings
from workers.cli import parser
from workflows.turn import LLM_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
EXTERNAL = K8S / "overlays" / "external"
SECRET_EXAMPLE = BASE / "secret.example.yaml"
SECRET_NAME = "steward-secrets"
KUBERNETES_VERSION = "1.34"
"""A recent Kubernetes release whose schemas kubernetes-validate ships."""

Obj = dict[str, Any]
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}
WORKLOADS = {"Deployment", "Job"}


# --- the loader ------------------------------------------------------------------------


def _load_yaml_text(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _load_yaml(path: Path) -> list[Obj]:
    return _load_yaml_text(path.read_text())


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge, as far as these manifests need: maps merge, lists of named maps merge by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    named = isinstance(base, list) and isinstance(patch, list)
    if named and all(isinstance(i, dict) and "name" in i for i in base + patch):
        merged = {i["name"]: i for i in base}
        for item in patch:
            merged[item["name"]] = _merge(merged[item["name"]], item) if item["name"] in merged else item
        return list(merged.values())
    return patch


def _key(obj: Obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _containers(obj: Obj) -> list[Obj]:
    spec = obj["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}


def render(directory: Path) -> list[Obj]:
    """The objects `kubectl kustomize directory` prints (in file order, not kustomize's)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - SUPPORTED
    assert not unsupported, f"the test's loader does not support {sorted(unsupported)}: extend it"
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        objects += render(path) if path.is_dir() else _load_yaml(path)
    by_key = {_key(obj): i for i, obj in enumerate(objects)}
    for patch in kustomization.get("patches", []):
        assert set(patch) == {"path"}, f"the loader supports only `path` patches, not {patch}"
        for doc in _load_yaml(directory / patch["path"]):
            index = by_key[_key(doc)]  # a patch for a missing object is an error in kustomize too
            objects[index] = _merge(objects[index], doc)
    for replica in kustomization.get("replicas", []):
        target = next(
            o for o in objects if o["metadata"]["name"] == replica["name"] and "replicas" in o["spec"]
        )
        target["spec"]["replicas"] = replica["count"]
    for image in kustomization.get("images", []):
        for obj in objects:
            if obj["kind"] in WORKLOADS:
                for container in _containers(obj):
                    name = container["image"].split(":")[0]
                    if name == image["name"]:
                        new = image.get("newName", name)
                        container["image"] = f"{new}:{image['newTag']}" if "newTag" in image else new
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    return objects


BUILDS = {"base": BASE, "external": EXTERNAL}


@pytest.fixture(scope="module", params=sorted(BUILDS))
def objects(request: pytest.FixtureRequest) -> list[Obj]:
    return render(BUILDS[request.param])


def _pod_specs(objs: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    for obj in objs:
        if obj["kind"] in WORKLOADS:
            yield obj, obj["spec"]["template"]["spec"]


def _one(objs: list[Obj], kind: str, name: str) -> Obj:
    return next(o for o in objs if _key(o) == (kind, name))


# --- the checks: each answers the problems it finds -------------------------------------


def schema_problems(objs: list[Obj]) -> list[str]:
    problems = []
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as err:
            path = ".".join(str(p) for p in err.path)
            problems.append(f"{_key(obj)} {path}: {err.message}")
    return problems


def resource_problems(objs: list[Obj]) -> list[str]:
    problems = []
    for obj, _ in _pod_specs(objs):
        for container in _containers(obj):
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(part, {}))
                if missing:
                    problems.append(f"{_key(obj)} {container['name']}: no {part} for {sorted(missing)}")
    return problems


HEALTH_ROUTES = {r.path for r in health.router.routes if isinstance(r, APIRoute)}


def probe_problems(objs: list[Obj]) -> list[str]:
    """API probes are the real health routes; the worker's is its metrics port; ports are named ones."""
    problems = []
    api = _containers(_one(objs, "Deployment", "steward-api"))[0]
    if api.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        problems.append("the API's readiness probe is not /readyz")
    for probe in ("livenessProbe", "startupProbe"):
        if api.get(probe, {}).get("httpGet", {}).get("path") != "/healthz":
            problems.append(f"the API's {probe} is not /healthz")
    worker = _containers(_one(objs, "Deployment", "steward-worker"))[0]
    metrics_port = int(_one(objs, "ConfigMap", "steward-config")["data"]["STEWARD_WORKER_METRICS_PORT"])
    worker_ports = {p["name"]: p["containerPort"] for p in worker.get("ports", [])}
    if worker_ports.get(worker.get("livenessProbe", {}).get("httpGet", {}).get("port")) != metrics_port:
        problems.append("the worker's liveness probe is not on STEWARD_WORKER_METRICS_PORT")
    for obj, _ in _pod_specs(objs):
        for container in _containers(obj):
            ports = {p["name"] for p in container.get("ports", [])}
            for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
                get = container.get(kind, {}).get("httpGet")
                if get is None:
                    continue
                if get["port"] not in ports:
                    problems.append(f"{_key(obj)} {kind} uses port {get['port']!r}, not a named port")
                if get["path"] not in HEALTH_ROUTES | {"/metrics"}:
                    problems.append(f"{_key(obj)} {kind} probes {get['path']}, which nothing serves")
    return problems


def _aliases() -> set[str]:
    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        assert isinstance(alias, AliasChoices)
        names |= {str(choice) for choice in alias.choices}
    return names


SECRET_SETTINGS = {
    str(choice)
    for name, field in Settings.model_fields.items()
    if field.annotation in (SecretStr, SecretStr | None) or name == "database_url"
    for choice in field.validation_alias.choices  # type: ignore[union-attr]
}
"""Settings that hold credentials: the database URL (it carries the password) and every SecretStr."""


def env_problems(objs: list[Obj]) -> list[str]:
    """Every variable set is one Steward reads; secrets come only from the Secret, by reference."""
    known = _aliases()
    problems = []
    config = _one(objs, "ConfigMap", "steward-config")["data"]
    for name in config:
        if name not in known:
            problems.append(f"ConfigMap key {name} is no Steward setting")
        if name in SECRET_SETTINGS:
            problems.append(f"ConfigMap holds the secret {name}")
    for obj, _ in _pod_specs(objs):
        for container in _containers(obj):
            for source in container.get("envFrom", []):
                if source.get("configMapRef", {}).get("name") != "steward-config":
                    problems.append(f"{_key(obj)} reads env from {source}")
            for env in container.get("env", []):
                if env["name"] not in known:
                    problems.append(f"{_key(obj)} sets {env['name']}, which Steward does not read")
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if env["name"] in SECRET_SETTINGS and (ref is None or ref["name"] != SECRET_NAME):
                    problems.append(f"{_key(obj)} sets {env['name']} other than from {SECRET_NAME}")
    return problems


def command_problems(objs: list[Obj]) -> list[str]:
    """Every container runs the `steward` script with arguments its parser accepts."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    problems = []
    for obj, _ in _pod_specs(objs):
        for container in _containers(obj):
            command = container.get("command", []) + container.get("args", [])
            if not command or command[0] not in scripts:
                problems.append(f"{_key(obj)} runs {command}, not a console script")
                continue
            try:
                parser().parse_args(command[1:])
            except SystemExit:
                problems.append(f"{_key(obj)}: `{' '.join(command)}` is no steward command")
    return problems


def security_problems(objs: list[Obj]) -> list[str]:
    problems = []
    for obj, pod in _pod_specs(objs):
        if pod.get("securityContext", {}).get("runAsNonRoot") is not True:
            problems.append(f"{_key(obj)} may run as root")
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{_key(obj)} mounts a service account token it never uses")
        for container in _containers(obj):
            context = container.get("securityContext", {})
            if context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{_key(obj)} {container['name']} has a writable root filesystem")
            if context.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{_key(obj)} {container['name']} allows privilege escalation")
            if context.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{_key(obj)} {container['name']} keeps Linux capabilities")
    return problems


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def selector_problems(objs: list[Obj]) -> list[str]:
    """Deployments select their own pods; the Service and each PDB select exactly one Deployment's."""
    problems = []
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    for d in deployments:
        if not _selects(d["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]):
            problems.append(f"{_key(d)} does not select its own pods")
    for obj in objs:
        if obj["kind"] == "Service":
            selector = obj["spec"]["selector"]
        elif obj["kind"] == "PodDisruptionBudget":
            selector = obj["spec"]["selector"]["matchLabels"]
        else:
            continue
        chosen = [d for d in deployments if _selects(selector, d["spec"]["template"]["metadata"]["labels"])]
        if len(chosen) != 1:
            problems.append(f"{_key(obj)} selects {[_key(d) for d in chosen]}")
    for obj in objs:
        labels = obj["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/name") != "steward" or "app.kubernetes.io/part-of" not in labels:
            problems.append(f"{_key(obj)} lacks the app.kubernetes.io labels")
    return problems


CHECKS: list[Callable[[list[Obj]], list[str]]] = [
    schema_problems,
    resource_problems,
    probe_problems,
    env_problems,
    command_problems,
    security_problems,
    selector_problems,
]


# --- the tests ---------------------------------------------------------------------------


def test_the_build_holds_every_steward_object(objects: list[Obj]) -> None:
    assert sorted(_key(o) for o in objects) == [
        ("ConfigMap", "steward-config"),
        ("Deployment", "steward-api"),
        ("Deployment", "steward-worker"),
        ("Job", "steward-migrate"),
        ("PodDisruptionBudget", "steward-api"),
        ("PodDisruptionBudget", "steward-worker"),
        ("Service", "steward-api"),
    ]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_manifests_pass(objects: list[Obj], check: Callable[[list[Obj]], list[str]]) -> None:
    assert check(objects) == []


def _break(objs: list[Obj], kind: str, name: str, change: Callable[[Obj], None]) -> list[Obj]:
    broken = copy.deepcopy(objs)
    change(_one(broken, kind, name))
    return broken


def _api(obj: Obj) -> Obj:
    return _containers(obj)[0]


BREAKAGES: dict[str, tuple[Callable[[list[Obj]], list[str]], str, str, Callable[[Obj], None]]] = {
    "readiness path typo": (
        probe_problems,
        "Deployment",
        "steward-api",
        lambda o: _api(o)["readinessProbe"]["httpGet"].update(path="/ready"),
    ),
    "liveness on another port": (
        probe_problems,
        "Deployment",
        "steward-worker",
        lambda o: _api(o)["livenessProbe"]["httpGet"].update(port="http"),
    ),
    "misspelt field": (
        schema_problems,
        "Deployment",
        "steward-api",
        lambda o: _api(o).update(readinesProbe=_api(o)["readinessProbe"]),
    ),
    "wrong type": (schema_problems, "Deployment", "steward-worker", lambda o: o["spec"].update(replicas="3")),
    "no memory request": (
        resource_problems,
        "Job",
        "steward-migrate",
        lambda o: _api(o)["resources"]["requests"].pop("memory"),
    ),
    "unknown setting": (
        env_problems,
        "Deployment",
        "steward-worker",
        lambda o: _api(o)["env"].append({"name": "STEWARD_TEMPORAL_TLS", "value": "true"}),
    ),
    "secret in plain text": (
        env_problems,
        "ConfigMap",
        "steward-config",
        lambda o: o["data"].update(STEWARD_BOOTSTRAP_KEY="stw_x"),
    ),
    "no such subcommand": (
        command_problems,
        "Deployment",
        "steward-worker",
        lambda o: _api(o).update(command=["steward", "workers"]),
    ),
    "no such flag": (
        command_problems,
        "Deployment",
        "steward-api",
        lambda o: _api(o).update(command=["steward", "api", "--bind", "0.0.0.0"]),
    ),
    "writable root": (
        security_problems,
        "Job",
        "steward-migrate",
        lambda o: _api(o)["securityContext"].update(readOnlyRootFilesystem=False),
    ),
    "service selects nothing": (
        selector_problems,
        "Service",
        "steward-api",
        lambda o: o["spec"]["selector"].update({"app.kubernetes.io/component": "web"}),
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_each_check_catches_a_broken_manifest(breakage: str) -> None:
    check, kind, name, change = BREAKAGES[breakage]
    objs = render(EXTERNAL)
    assert check(objs) == []
    assert check(_break(objs, kind, name, change)) != []


def test_no_secret_value_is_in_the_repository() -> None:
    """No build holds a Secret; the only Secret manifest is the example, in no kustomization."""
    for directory in BUILDS.values():
        assert all(o["kind"] != "Secret" for o in render(directory))
    listed = {
        (path.parent / entry).resolve()
        for path in K8S.rglob("kustomization.yaml")
        for entry in yaml.safe_load(path.read_text()).get("resources", [])
    }
    assert SECRET_EXAMPLE.resolve() not in listed
    secrets = [p for p in K8S.rglob("*.yaml") for doc in _load_yaml(p) if doc.get("kind") == "Secret"]
    assert secrets == [SECRET_EXAMPLE]
    (example,) = _load_yaml(SECRET_EXAMPLE)
    assert example["metadata"]["name"] == SECRET_NAME
    assert "data" not in example
    assert all("change-me" in value for value in example["stringData"].values())


def test_every_secret_reference_is_a_key_of_the_example() -> None:
    """What `kubectl create secret` must provide is what secret.example.yaml (and the README) lists."""
    (example,) = _load_yaml(SECRET_EXAMPLE)
    refs = {
        env["valueFrom"]["secretKeyRef"]["key"]
        for obj, _ in _pod_specs(render(BASE))
        for container in _containers(obj)
        for env in container.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    assert refs == set(example["stringData"])
    readme = (ROOT / "README.md").read_text()
    assert all(f"--from-literal={key}=" in readme for key in refs)


def test_the_overlay_points_at_external_services() -> None:
    base, external = render(BASE), render(EXTERNAL)
    assert {o["metadata"].get("namespace") for o in external} == {"steward"}
    config = _one(external, "ConfigMap", "steward-config")["data"]
    base_config = _one(base, "ConfigMap", "steward-config")["data"]
    assert config["TEMPORAL_ADDRESS"] != base_config["TEMPORAL_ADDRESS"]
    assert config["TEMPORAL_NAMESPACE"] == "steward"
    assert config["STEWARD_TASK_QUEUE"] == base_config["STEWARD_TASK_QUEUE"]  # kept from the base
    images = {c["image"] for obj, _ in _pod_specs(external) for c in _containers(obj)}
    assert images == {"registry.example.com/steward:0.1.0"}
    assert _one(external, "Deployment", "steward-api")["spec"]["replicas"] == 3


def test_the_worker_outlives_its_longest_activity_on_shutdown() -> None:
    objects = render(BASE)
    worker = _one(objects, "Deployment", "steward-worker")
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    waits = float(_one(objects, "ConfigMap", "steward-config")["data"]["STEWARD_WORKER_SHUTDOWN_SECONDS"])
    # The worker waits for its activities as long as an LLM call may take, and the pod for the worker.
    assert LLM_TIMEOUT.total_seconds() <= waits < grace


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with its built-in kustomize) not installed"
)
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_the_loader_renders_what_kustomize_renders(build: str) -> None:
    done = subprocess.run(
        ["kubectl", "kustomize", str(BUILDS[build])], capture_output=True, text=True, check=True, timeout=60
    )
    expected = sorted(_load_yaml_text(done.stdout), key=_key)
    assert sorted(render(BUILDS[build]), key=_key) == expected
