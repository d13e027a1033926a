"""Checks of the cluster launcher configs and KubeRay manifests (no network, no Ray start).

The launcher configs are validated against Ray's own schema (ray/autoscaler/ray-schema.json,
additionalProperties: false) as written, and again after Ray's `prepare_config` merged the
provider's defaults.yaml as `ray up` does, with Ray's `validate_config`.
"""
from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER_CONFIGS = [ROOT / "cluster.yaml", ROOT / "cluster" / "gcp.yaml"]
KUBERAY = ROOT / "cluster" / "kuberay"
ALL_FILES = LAUNCHER_CONFIGS + sorted(p for p in (ROOT / "cluster").rglob("*") if p.is_file()) + [
    ROOT / "docs" / "CLUSTER.md"
]
TORCH, TORCHVISION = "2.14.1", "0.29.1"


def _lock_pin(name: str) -> str:
    for line in (ROOT / "requirements-lock.txt").read_text().splitlines():
        m = re.match(rf"^{re.escape(name)}(\[[^\]]*\])?==(\S+)", line.strip())
        if m:
            return m.group(2)
    raise AssertionError(f"{name} not pinned in requirements-lock.txt")


RAY_VERSION = _lock_pin("ray")


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _ray_validate(config: dict) -> None:
    """What `ray up` does before touching the cloud: merge defaults, then validate."""
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    # The file as written first (prepare_config crashes with a TypeError on some
    # malformed fields before the schema sees them), then the merged config.
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    validate_config(prepare_config(copy.deepcopy(config)))


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_launcher_config_passes_ray_schema(path):
    config = _load(path)
    _ray_validate(config)
    # The merged config must not fall back to defaults.yaml's dev-wheel setup commands.
    for key in ("setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert key in config, f"{path.name} lacks {key}"
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.update(workers_max=3),  # unknown top-level key
        lambda c: c.update(idle_timeout_minutes="ten"),  # wrong type
        lambda c: c.update(setup_commands="pip install x"),  # string, not a list
        lambda c: next(iter(c["available_node_types"].values())).update(typo_field=1),
        lambda c: next(iter(c["available_node_types"].values())).update(resources={"GPU": -1}),
    ],
    ids=["unknown-key", "wrong-type", "commands-not-list", "node-type-extra", "negative-gpu"],
)
def test_schema_rejects_mutated_config(path, mutate):
    config = _load(path)
    mutate(config)
    with pytest.raises(jsonschema.ValidationError):
        _ray_validate(config)


def test_head_type_must_exist():
    config = _load(LAUNCHER_CONFIGS[0])
    config["head_node_type"] = "no.such.type"
    with pytest.raises(ValueError, match="head_node_type"):
        _ray_validate(config)


@pytest.mark.parametrize("path", LAUNCHER_CONFIGS, ids=lambda p: p.name)
def test_launcher_topology_and_commands(path):
    config = _load(path)
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    assert head.get("resources", {}).get("GPU", 0) == 0
    assert len(workers) == 1
    (gpu,) = workers.values()
    assert gpu["min_workers"] == 0 and gpu["max_workers"] == 8 <= config["max_workers"]
    assert isinstance(config["idle_timeout_minutes"], int)
    assert config["docker"]["image"] == f"rayproject/ray:{RAY_VERSION}-py311-gpu"

    setup = config["setup_commands"]
    i_torch = next(i for i, c in enumerate(setup) if f"torch=={TORCH}" in c)
    i_lock = next(i for i, c in enumerate(setup) if "-r " in c and "requirements-lock.txt" in c)
    i_pkg = next(i for i, c in enumerate(setup) if "--no-deps -e" in c)
    assert i_torch < i_lock < i_pkg
    assert f"torchvision=={TORCHVISION}" in setup[i_torch]
    # Every path the install reads is synced from the working copy, and exists here.
    for remote, local in config["file_mounts"].items():
        assert remote.startswith("~/cortexzoo/")
        assert (ROOT / local).exists(), local
    for needed in ("requirements-lock.txt", "pyproject.toml", "lib"):
        assert f"~/cortexzoo/{needed}" in config["file_mounts"]

    head_start = " ".join(config["head_start_ray_commands"])
    for flag in ("--head", "--port=6379", "--dashboard-host=0.0.0.0",
                 "--autoscaling-config=~/ray_bootstrap_config.yaml"):
        assert flag in head_start
    assert "--address=$RAY_HEAD_IP:6379" in " ".join(config["worker_start_ray_commands"])


def test_aws_specifics():
    config = _load(ROOT / "cluster.yaml")
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["node_config"]["InstanceType"] == "m6i.2xlarge"
    gpu = next(v for k, v in types.items() if k != config["head_node_type"])
    assert gpu["node_config"]["InstanceType"] == "g5.xlarge"
    assert "IamInstanceProfile" in gpu["node_config"]  # S3 from workers via the role


def test_gcp_specifics():
    config = _load(ROOT / "cluster" / "gcp.yaml")
    gpu = next(v for k, v in config["available_node_types"].items() if k != config["head_node_type"])
    acc = gpu["node_config"]["guestAccelerators"]
    assert acc == [{"acceleratorType": "nvidia-l4", "acceleratorCount": 1}]
    assert gpu["node_config"]["scheduling"] == [{"onHostMaintenance": "TERMINATE"}]
    head = config["available_node_types"][config["head_node_type"]]["node_config"]
    assert "guestAccelerators" not in head


def _kube_docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]


def _check_cluster_spec(spec: dict) -> None:
    assert spec["rayVersion"] == RAY_VERSION
    assert spec["enableInTreeAutoscaling"] is True
    head_containers = spec["headGroupSpec"]["template"]["spec"]["containers"]
    assert head_containers and all(RAY_VERSION in c["image"] for c in head_containers)
    assert "nvidia.com/gpu" not in str(head_containers[0].get("resources", {}))
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] == 0 < group["maxReplicas"]
        containers = group["template"]["spec"]["containers"]
        assert containers
        for c in containers:
            assert RAY_VERSION in c["image"]
            assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def test_kuberay_raycluster():
    docs = _kube_docs("raycluster.yaml")
    (rc,) = [d for d in docs if d["kind"] == "RayCluster"]
    assert rc["apiVersion"] == "ray.io/v1"
    _check_cluster_spec(rc["spec"])


def test_kuberay_rayjob_scan():
    (job,) = _kube_docs("rayjob-scan.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    _check_cluster_spec(spec["rayClusterSpec"])
    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "python" and re.fullmatch(r"jobs/\w+\.py", argv[1])
    assert (ROOT / argv[1]).is_file(), argv[1]
    config = argv[argv.index("--config") + 1]
    assert re.fullmatch(r"configs/[\w.-]+\.yaml", config) and (ROOT / config).is_file()
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert "working_dir" in runtime_env


def test_dockerfile_pins():
    text = (ROOT / "cluster" / "docker" / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{RAY_VERSION}-py311-gpu" in text
    assert f"torch=={TORCH} torchvision=={TORCHVISION}" in text
    assert text.index(f"torch=={TORCH}") < text.index("-r requirements-lock.txt") < text.index("--no-deps -e .")


def test_lock_and_install_agree():
    assert RAY_VERSION == "2.60.0"
    install = (ROOT / "install.sh").read_text()
    assert f"torch=={TORCH} torchvision=={TORCHVISION}" in install


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_foreign_ray_or_torch_versions(path):
    text = path.read_text()
    for v in re.findall(r"rayproject/ray:(\d+\.\d+\.\d+)", text) + re.findall(r"rayVersion:\s*\"?([\d.]+)", text):
        assert v == RAY_VERSION, f"{path.name} pins Ray {v}"
    for v in re.findall(r"\btorch==([\w.+]+)", text):
        assert v == TORCH, f"{path.name} pins torch {v}"


CREDENTIAL_PATTERNS = [
    re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])"),
    re.compile(r"aws_secret_access_key", re.I),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\"private_key\"\s*:"),
]


def _credential_hits(text: str) -> list[str]:
    return [p.pattern for p in CREDENTIAL_PATTERNS if p.search(text)]


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_credentials(path):
    assert _credential_hits(path.read_text()) == [], path


def test_credential_scan_can_fail():
    fake = "AKIA" + "ABCDEFGHIJKLMNOP"
    assert _credential_hits(f"key: {fake}")
    assert _credential_hits("AWS_SECRET_ACCESS_KEY" + "=x")
    assert not _credential_hits("IamInstanceProfile: {Name: ray-autoscaler-v1}")
