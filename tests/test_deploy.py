"""The deployment files keep their promises: the Kubernetes manifests (deploy/kubernetes/) validate against the
schemas of pinned Kubernetes versions, offline, and agree with the code (settings, routes, shutdown times, metrics,
the image's user); the compose file's profiles (deploy/compose/) leave its default layout as it was."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from app.auth import load_keys
from app.settings import Settings
from genserve import GRACEFUL_SHUTDOWN_S
from tests.conftest import ROOT
from worker.state.settings import ENV_PREFIX, WorkerSettings

K8S = ROOT / "deploy" / "kubernetes"
COMPOSE_DIR = ROOT / "deploy" / "compose"
NAMESPACE = "genserve"

# The oldest Kubernetes the manifests promise to work on, and a recent one: each manifest validates against both
# schemas (strict: an unknown field is an error). kubernetes-validate bundles them, so this needs no network.
KUBERNETES_VERSIONS = ("1.30.0", "1.35.0")
# Custom resources, whose schemas kubernetes-validate does not have: test_the_keda_scaled_object checks them.
CUSTOM_KINDS = {("keda.sh/v1alpha1", "ScaledObject")}

# GENSERVE_* names the deployment files use before the code defines them, so that those files can land ahead of
# the S3 store and Redis Sentinel work. Empty this (it is empty now: the working tree defines every name used) once
# that work has landed; the names in it are the only ones the settings checks skip.
SETTINGS_NOT_YET_DEFINED: frozenset[str] = frozenset()

# The variables other than GENSERVE_* that the files may set: boto3's (the S3 store), and HOME for the libraries'
# caches on a read-only root file system.
OTHER_VARIABLES = {"AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "HOME"}
PLACEHOLDER = re.compile(r"replace[-_]me", re.IGNORECASE)


# --- reading the files --------------------------------------------------------------------------------------------


@cache
def manifests() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file relative to deploy/kubernetes, object) for every object of every manifest."""
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((str(path.relative_to(K8S)), doc))
    return tuple(found)


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests() if doc["kind"] == kind}


def deployments(component: str | None = None) -> dict[str, dict[str, Any]]:
    return {
        name: doc
        for name, doc in objects("Deployment").items()
        if component is None or doc["metadata"]["labels"]["app.kubernetes.io/component"].startswith(component)
    }


def pod(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod(deployment)["containers"]
    return only


def config_env() -> dict[str, str]:
    return dict(objects("ConfigMap")["genserve-config"]["data"])


def secret_env() -> dict[str, str]:
    return dict(objects("Secret")["genserve-secrets"]["stringData"])


def pod_env(deployment: dict[str, Any]) -> dict[str, str]:
    """The environment a pod's container gets from the manifests: its envFrom sources, then its own env."""
    env: dict[str, str] = {}
    for source in container(deployment).get("envFrom", []):
        if "configMapRef" in source:
            env.update(objects("ConfigMap")[source["configMapRef"]["name"]]["data"])
        if "secretRef" in source:
            env.update(objects("Secret")[source["secretRef"]["name"]]["stringData"])
    env.update({item["name"]: item["value"] for item in container(deployment).get("env", [])})
    return env


@cache
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def image_env(name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", dockerfile())
    assert match, f"the Dockerfile sets no {name}"
    return match.group(1)


def image_uid() -> int:
    created = re.search(r"useradd\b[^\n]*--uid (\d+)", dockerfile())
    user = re.search(r"^USER (\d+)$", dockerfile(), re.MULTILINE)
    assert created and user and created.group(1) == user.group(1), "the image runs as the user it creates"
    return int(user.group(1))


@cache
def compose(path: Path = ROOT / "docker-compose.yml") -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def interpolated(value: str) -> str:
    """A compose value with its `${VAR:-default}` as the default and `${VAR:?error}` as a stand-in value."""
    value = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)
    return re.sub(r"\$\{\w+:\?[^}]*\}", "a-stand-in-value", value)


def quantity_bytes(quantity: str) -> int:
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", quantity)
    assert match, quantity
    return int(match.group(1)) * units.get(match.group(2) or "", 1)


def check_setting_names(names: set[str], settings_class: type[WorkerSettings], where: str) -> None:
    """Every GENSERVE_* name is a field of `settings_class` (GENSERVE_ + the field's name upper-cased); the others
    are the few known variables."""
    fields = set(settings_class.model_fields)
    for name in sorted(names):
        if name.startswith(ENV_PREFIX):
            if name in SETTINGS_NOT_YET_DEFINED:
                continue
            field = name.removeprefix(ENV_PREFIX).lower()
            assert field in fields, f"{where}: {name} is no setting of {settings_class.__name__}"
        else:
            assert name in OTHER_VARIABLES, f"{where}: {name} is neither a setting nor a known variable"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No GENSERVE_* or AWS_* variable of the test run's own environment."""
    for name in list(os.environ):
        if name.startswith((ENV_PREFIX, "AWS_")):
            monkeypatch.delenv(name)
    yield monkeypatch


# --- Kubernetes: schemas --------------------------------------------------------------------------------------------


def test_every_manifest_validates_against_the_pinned_kubernetes_schemas() -> None:
    checked = set()
    for file, doc in manifests():
        assert {"apiVersion", "kind", "metadata"} <= set(doc), file
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(part) for part in exc.path)
                pytest.fail(f"{file}: {doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}: {path}: {exc}")
        checked.add(doc["kind"])
    assert checked >= {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "PodDisruptionBudget"}


def test_everything_lives_in_the_namespace_and_names_are_unique() -> None:
    (namespace,) = objects("Namespace")
    assert namespace == NAMESPACE
    assert objects("Namespace")[NAMESPACE]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    seen = set()
    for file, doc in manifests():
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in seen, f"{file}: {key} is defined twice"
        seen.add(key)
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, f"{file}: {key} is not in {NAMESPACE}"


# --- Kubernetes: agreement with the code ---------------------------------------------------------------------------


def test_every_setting_the_manifests_name_exists() -> None:
    """GENSERVE_* names in the ConfigMap, the Secret and the containers are settings; the workers' own are the
    workers' settings (the API's class extends theirs)."""
    check_setting_names(set(config_env()), Settings, "ConfigMap genserve-config")
    check_setting_names(set(secret_env()), Settings, "Secret genserve-secrets")
    for name, deployment in deployments().items():
        own = {item["name"] for item in container(deployment).get("env", [])}
        is_worker = name.startswith("genserve-worker")
        check_setting_names(own, WorkerSettings if is_worker else Settings, f"Deployment {name}")
        check_setting_names(set(pod_env(deployment)), WorkerSettings if is_worker else Settings, f"pod of {name}")


def test_the_manifests_configure_valid_settings(clean_env: pytest.MonkeyPatch) -> None:
    """Each pod's environment, placeholders included, passes the settings' validation: an S3 URL, host:port
    sentinels, a device; the S3 store and Sentinel are both in use."""
    for name, deployment in deployments().items():
        with pytest.MonkeyPatch.context() as env:
            for key, value in pod_env(deployment).items():
                env.setenv(key, value)
            settings = (WorkerSettings if name.startswith("genserve-worker") else Settings)()
            assert settings.store_url and settings.store_url.startswith("s3://"), name
            assert len(settings.redis_target.sentinels) == 3, name
            assert settings.redis_password.get_secret_value(), name
            assert str(settings.cache_dir) == "/cache", name


def test_the_placeholder_keys_file_is_refused() -> None:
    """An API given the keys file as committed does not start (instead of running without keys)."""
    keys_file = objects("Secret")["genserve-api-keys"]["stringData"]["api-keys"]
    lines = [line for line in keys_file.splitlines() if line.strip() and not line.startswith("#")]
    assert lines and all(PLACEHOLDER.search(line) for line in lines)
    with pytest.raises(ValueError, match="at least"):
        load_keys(",".join(lines), None)


def test_no_secret_is_committed_and_every_placeholder_is_documented() -> None:
    for key, value in secret_env().items():
        assert value == "" or PLACEHOLDER.search(value), f"Secret genserve-secrets holds a value for {key}"
    readme = (K8S / "README.md").read_text()

    def placeholders(node: Any, key: str) -> Iterator[str]:
        if isinstance(node, dict):
            for k, v in node.items():
                yield from placeholders(v, str(k))
        elif isinstance(node, list):
            for item in node:
                yield from placeholders(item, key)
        elif isinstance(node, str) and PLACEHOLDER.search(node):
            yield key

    found = {key for _, doc in manifests() for key in placeholders(doc, "")}
    assert {"GENSERVE_STORE_URL", "GENSERVE_REDIS_SENTINELS", "serverAddress", "api-keys"} <= found
    for key in found:
        assert f"`{key}`" in readme, f"deploy/kubernetes/README.md does not say what to put in {key}"


def test_the_api_pods_probe_the_health_routes_and_outlast_the_graceful_shutdown() -> None:
    health_routes = (ROOT / "app" / "routes" / "health.py").read_text()
    for route in ("/healthz", "/readyz"):
        assert f'@router.get("{route}"' in health_routes
    (api,) = deployments("api").values()
    spec, main = pod(api), container(api)
    assert main["command"] == ["genserve", "serve", "--host", "0.0.0.0", "--workers", "1"]
    (port,) = main["ports"]
    assert port["containerPort"] == 8000
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert main["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    pre_stop = main["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert spec["terminationGracePeriodSeconds"] > int(pre_stop[1]) + GRACEFUL_SHUTDOWN_S
    # The memory limit leaves room beyond the budget of loaded models.
    model_cache = int(pod_env(api).get("GENSERVE_MODEL_CACHE_MB", Settings.model_fields["model_cache_mb"].default))
    assert quantity_bytes(main["resources"]["limits"]["memory"]) > 2 * model_cache * (1 << 20)


def test_the_workers_have_no_probes_and_time_to_checkpoint() -> None:
    compose_grace = int(compose()["services"]["worker"]["stop_grace_period"].rstrip("s"))
    workers = deployments("worker")
    assert set(workers) == {"genserve-worker", "genserve-worker-gpu"}
    for name, worker in workers.items():
        main = container(worker)
        assert main["command"] == ["genserve", "worker"], name
        assert not {"ports", "readinessProbe", "livenessProbe", "startupProbe"} & set(main), name
        assert pod(worker)["terminationGracePeriodSeconds"] >= max(60, compose_grace), name


def test_the_gpu_workers_get_a_gpu_and_the_cuda_image() -> None:
    gpu = container(deployments()["genserve-worker-gpu"])
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod_env(deployments()["genserve-worker-gpu"])["GENSERVE_DEVICE"] == "cuda"
    services = compose()["services"]
    assert gpu["image"] == services["worker-gpu"]["image"]  # genserve:gpu, built with TORCH_VARIANT=cu...
    for name in ("genserve-api", "genserve-worker"):
        main = container(deployments()[name])
        assert main["image"] == services["api"]["image"] == "genserve:latest", name
        assert "nvidia.com/gpu" not in main["resources"].get("limits", {}), name


def test_the_pods_run_as_the_images_user_with_a_read_only_root() -> None:
    """Non-root as the image's uid; whatever genserve writes (cache, data, /tmp, HOME) is on an emptyDir volume,
    the cache's at least as large as GENSERVE_CACHE_MB."""
    uid = image_uid()
    for name, deployment in deployments().items():
        spec, main = pod(deployment), container(deployment)
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == uid and context["fsGroup"] == uid, name
        assert context["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec["enableServiceLinks"] is False, name  # GENSERVE_<SERVICE>_PORT variables would look like settings
        assert spec["automountServiceAccountToken"] is False, name
        own = main["securityContext"]
        assert own["allowPrivilegeEscalation"] is False and own["readOnlyRootFilesystem"] is True, name
        assert own["capabilities"]["drop"] == ["ALL"], name
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in main["volumeMounts"]}
        env = pod_env(deployment)
        written = {
            env["GENSERVE_CACHE_DIR"],
            env.get("GENSERVE_DATA_DIR", image_env("GENSERVE_DATA_DIR")),
            env["HOME"],
            "/tmp",
        }
        for path in written:
            under = [mount for mount in mounts if path == mount or path.startswith(mount.rstrip("/") + "/")]
            assert under and "emptyDir" in mounts[max(under, key=len)], f"{name}: {path} is on no emptyDir volume"
        cache_mb = int(env.get("GENSERVE_CACHE_MB", WorkerSettings.model_fields["cache_mb"].default))
        cache_limit = mounts[env["GENSERVE_CACHE_DIR"]]["emptyDir"]["sizeLimit"]
        assert quantity_bytes(cache_limit) >= cache_mb * (1 << 20), name


def test_the_api_reads_its_keys_from_the_secret_and_the_workers_never_see_them() -> None:
    (api,) = deployments("api").values()
    volumes = {volume["name"]: volume for volume in pod(api)["volumes"]}
    keys_file = Path(pod_env(api)["GENSERVE_API_KEYS_FILE"])
    (mount,) = [m for m in container(api)["volumeMounts"] if Path(m["mountPath"]) == keys_file.parent]
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert "items" not in secret  # each key of the Secret is a file of its name
    assert keys_file.name in objects("Secret")[secret["secretName"]]["stringData"]
    assert secret["defaultMode"] & 0o040, "the keys file is readable by the pod's group (fsGroup)"
    for name, worker in deployments("worker").items():
        assert "genserve-api-keys" not in str(worker), name
        assert "GENSERVE_API_KEYS_FILE" not in pod_env(worker), name


def test_references_between_the_objects_resolve() -> None:
    for name, deployment in deployments().items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
        for source in container(deployment).get("envFrom", []):
            for ref, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if ref in source:
                    assert source[ref]["name"] in objects(kind), f"{name}: no {kind} {source[ref]['name']}"
    (api,) = deployments("api").values()
    api_labels = api["spec"]["template"]["metadata"]["labels"]
    service = objects("Service")["genserve-api"]
    assert service["spec"]["selector"].items() <= api_labels.items()
    for name, worker in deployments("worker").items():
        assert not service["spec"]["selector"].items() <= worker["spec"]["template"]["metadata"]["labels"].items(), name
    (port,) = service["spec"]["ports"]
    (container_port,) = container(api)["ports"]
    assert port["port"] == 8000 and port["targetPort"] == container_port["name"]
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container_port["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    budget = objects("PodDisruptionBudget")["genserve-api"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= api_labels.items()
    assert budget["spec"]["minAvailable"] < api["spec"]["replicas"]


def test_the_keda_scaled_object() -> None:
    """A CRD, so not in kubernetes-validate's schemas: its required fields, its target, and a query on metrics the
    API exports."""
    (scaled,) = objects("ScaledObject").values()
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] in deployments("worker")
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    assert {"serverAddress", "query", "threshold"} <= set(meta)
    assert all(isinstance(value, str) for value in meta.values()), "KEDA's trigger metadata are strings"
    assert float(meta["threshold"]) > 0
    assert meta["serverAddress"].startswith("http")
    metrics_source = (ROOT / "app" / "metrics.py").read_text()
    used = set(re.findall(r"\bgenserve_\w+", meta["query"]))
    assert "genserve_training_queue_depth" in used
    for metric in used:
        assert f'"{metric}"' in metrics_source, f"app/metrics.py exports no {metric}"
    # Every API pod reports the same queue (read from Redis): summing over pods would count it once per pod.
    assert "sum(" not in meta["query"]
    statuses = re.findall(r'status="(\w+)"', meta["query"])
    from worker.state.status import TrainingStatus

    assert statuses and set(statuses) <= {status.value for status in TrainingStatus}


# --- docker compose ---------------------------------------------------------------------------------------------------


def test_the_compose_profiles_leave_the_default_layout_alone() -> None:
    """Without a profile the same three services start (redis, api, worker); the new ones all need a profile, and
    nothing in the default layout depends on them."""
    services = compose()["services"]
    default = {name for name, service in services.items() if "profiles" not in service}
    assert default == {"redis", "api", "worker"}
    profiles = {name: service["profiles"] for name, service in services.items() if "profiles" in service}
    assert profiles.pop("worker-gpu") == ["gpu"]
    assert {name for name, p in profiles.items() if p == ["minio"]} == {"minio", "minio-init"}
    assert {name for name, p in profiles.items() if p == ["sentinel"]} == {
        "redis-replica",
        "sentinel-1",
        "sentinel-2",
        "sentinel-3",
    }
    for name in (*default, "worker-gpu"):
        assert set(services[name].get("depends_on", {})) <= {"redis"}, name
        environment = set(services[name].get("environment", {}))
        assert not {"GENSERVE_STORE_URL", "GENSERVE_REDIS_SENTINELS", "AWS_ENDPOINT_URL"} & environment, name


def test_the_compose_override_files_point_genserve_at_the_profiles() -> None:
    services = compose()["services"]
    minio = compose(COMPOSE_DIR / "minio.yml")["services"]
    sentinel = compose(COMPOSE_DIR / "sentinel.yml")["services"]
    for override, profile in ((minio, "minio"), (sentinel, "sentinel")):
        assert set(override) == {"api", "worker", "worker-gpu"}, profile
        for name, service in override.items():
            assert set(service) == {"environment", "depends_on"}, name
            for dependency in service["depends_on"]:
                assert services[dependency]["profiles"] == [profile], (name, dependency)
            check_setting_names(set(service["environment"]), WorkerSettings, f"deploy/compose/{profile}.yml")

    # MinIO: the bucket genserve uses is the one minio-init makes, at the minio service's address.
    env = {key: interpolated(value) for key, value in minio["api"]["environment"].items()}
    bucket = re.fullmatch(r"s3://([^/]+)/.*", env["GENSERVE_STORE_URL"])
    assert bucket
    alias, made = services["minio-init"]["command"][-1].split("/")
    assert made == bucket.group(1)
    assert services["minio-init"]["environment"][f"MC_HOST_{alias}"].endswith("@minio:9000")
    assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert "MINIO_ROOT_PASSWORD:?" in minio["api"]["environment"]["AWS_SECRET_ACCESS_KEY"]  # no default password
    store_mount = next(v.split(":")[1] for v in services["api"]["volumes"] if v.startswith("store:"))
    assert env["GENSERVE_CACHE_DIR"].startswith(store_mount + "/")  # the cache is on the `store` volume

    # Sentinel: genserve asks the sentinel services, on the port and for the master of sentinel.conf.
    conf = (COMPOSE_DIR / "sentinel.conf").read_text()
    monitor = re.search(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", conf, re.MULTILINE)
    port = re.search(r"^port (\d+)$", conf, re.MULTILINE)
    assert monitor and port
    env = {key: interpolated(value) for key, value in sentinel["api"]["environment"].items()}
    assert env["GENSERVE_REDIS_SENTINEL_MASTER"] == monitor.group(1)
    sentinels = [part.split(":") for part in env["GENSERVE_REDIS_SENTINELS"].split(",")]
    assert {host for host, _ in sentinels} == {f"sentinel-{i}" for i in (1, 2, 3)}
    assert {p for _, p in sentinels} == {port.group(1)}
    assert int(monitor.group(4)) == 2  # a quorum of two of the three
    assert monitor.group(2) == "redis" and monitor.group(3) == "6379"
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"]
    for i in (1, 2, 3):
        assert "sentinel.conf" in " ".join(services[f"sentinel-{i}"]["command"])


def test_the_compose_layouts_make_valid_settings(clean_env: pytest.MonkeyPatch) -> None:
    base = compose()["services"]["api"]["environment"]
    for layout in ("minio.yml", "sentinel.yml"):
        with pytest.MonkeyPatch.context() as env:
            for key, value in {**base, **compose(COMPOSE_DIR / layout)["services"]["api"]["environment"]}.items():
                env.setenv(key, interpolated(str(value)))
            settings = Settings()
            if layout == "minio.yml":
                assert settings.store_url == "s3://genserve/store"
            else:
                assert len(settings.redis_target.sentinels) == 3


def docker_compose(*args: str, minio_password: str | None) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MINIO_")}
    if minio_password is not None:
        env["MINIO_ROOT_PASSWORD"] = minio_password
    return subprocess.Popen(
        ["docker-compose", *args, "config", "-q"],
        cwd=ROOT,
        env={**env, "COMPOSE_PROJECT_NAME": "genserve"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_docker_compose_accepts_every_layout() -> None:
    """`docker-compose config` (v1.29, the version the README names) on the default layout and on the many-box one,
    which refuses to start without a MinIO password. The runs overlap: each takes a few tenths of a second."""
    many = ["-f", "docker-compose.yml", "-f", "deploy/compose/minio.yml", "-f", "deploy/compose/sentinel.yml"]
    many += ["--profile", "minio", "--profile", "sentinel"]
    runs = {
        "default": docker_compose(minio_password=None),
        "gpu": docker_compose("--profile", "gpu", minio_password=None),
        "many boxes": docker_compose(*many, minio_password="a-password-for-the-test"),
        "many boxes without a password": docker_compose(*many, minio_password=None),
    }
    results = {name: (run.communicate(timeout=60)[0], run.returncode) for name, run in runs.items()}
    for name in ("default", "gpu", "many boxes"):
        output, code = results[name]
        assert code == 0, f"{name}: {output}"
    output, code = results["many boxes without a password"]
    assert code != 0 and "MINIO_ROOT_PASSWORD" in output
