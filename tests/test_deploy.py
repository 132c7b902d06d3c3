"""Every manifest in deploy/ passes a schema check from a package; no cluster needed.

- Kubernetes core objects and every pod template: kubernetes-validate (the official
  OpenAPI schemas, strict: unknown fields fail);
- KubeRay RayCluster/RayJob: jsonschema against tests/kuberay_schema.py (hand-written
  from the CRDs; see its docstring);
- the cluster-launcher YAML: jsonschema against the ray-schema.json Ray ships;
- docker-compose: compose-spec's parser (the Compose specification, strict);
- the study inside the RayJob: greentune's own config validation.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import compose_spec
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.kuberay_schema import SCHEMAS
from tuner.config import load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
K8S_VERSION = "1.30.0"  # oldest Kubernetes the manifests promise to work on


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kubernetes(resource: dict) -> None:
    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def _cluster_specs(doc: dict) -> list[dict]:
    return [doc["spec"]] if doc["kind"] == "RayCluster" else [doc["spec"]["rayClusterSpec"]]


def _templates(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"], *(g["template"] for g in spec.get("workerGroupSpecs", []))]


def test_manifests_exist():
    assert {p.name for p in (DEPLOY / "kuberay").glob("*.yaml")} >= {"raycluster.yaml", "rayjob.yaml"}


@pytest.mark.parametrize("path", sorted((DEPLOY / "kuberay").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_match_their_schemas(path: Path):
    for doc in _documents(path):
        if doc["apiVersion"].startswith("ray.io/"):
            jsonschema.validate(doc, SCHEMAS[doc["kind"]])
            for spec in _cluster_specs(doc):
                for template in _templates(spec):
                    _kubernetes({"apiVersion": "v1", "kind": "PodTemplate",
                                 "metadata": {"name": "check"}, "template": template})
        else:
            _kubernetes(doc)


def test_schema_check_catches_a_typo():
    doc = _documents(DEPLOY / "kuberay" / "raycluster.yaml")[0]
    doc["spec"]["workerGroupSpecs"][0]["maxReplica"] = 4
    with pytest.raises(jsonschema.ValidationError, match="maxReplica"):
        jsonschema.validate(doc, SCHEMAS["RayCluster"])
    template = doc["spec"]["headGroupSpec"]["template"]
    template["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        _kubernetes({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "x"}, "template": template})


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_cpu_head_gpu_workers_and_autoscaling_bounds(name: str):
    doc = next(d for d in _documents(DEPLOY / "kuberay" / name) if d["apiVersion"] == "ray.io/v1")
    for spec in _cluster_specs(doc):
        assert spec["enableInTreeAutoscaling"] is True
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in head["resources"]["limits"]
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        (gpu,) = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu"]
        assert 0 <= gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"]
        worker = gpu["template"]["spec"]["containers"][0]
        assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
        image_ray = re.search(r"FROM rayproject/ray:([\d.]+)", (DEPLOY / "Dockerfile").read_text()).group(1)
        assert spec["rayVersion"] == image_ray


def test_rayjob_study_is_a_valid_greentune_config():
    docs = _documents(DEPLOY / "kuberay" / "rayjob.yaml")
    study = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["study.yaml"])
    cfg = load_config(study)
    job = next(d for d in docs if d["kind"] == "RayJob")
    assert job["spec"]["entrypoint"] == "greentune run /home/ray/study/study.yaml"
    # power limits need root workers: the example leaves them out (see test_gpu_workers_are_not_root)
    assert cfg.resources_per_trial.gpu == 1 and cfg.power_limit_range_w is None


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_gpu_workers_are_not_root_by_default(name: str):
    doc = next(d for d in _documents(DEPLOY / "kuberay" / name) if d["apiVersion"] == "ray.io/v1")
    for spec in _cluster_specs(doc):
        for group in spec["workerGroupSpecs"]:
            pod = group["template"]["spec"]
            for container in pod["containers"]:
                context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
                assert context.get("runAsNonRoot") is True and context.get("runAsUser", 1000) != 0, group["groupName"]
                assert not context.get("privileged", False)
                assert context.get("allowPrivilegeEscalation") is False
                assert context.get("capabilities", {}).get("drop") == ["ALL"]


def _head_mounts(spec: dict) -> dict[str, str]:
    """Mount path -> PersistentVolumeClaim name, for the head pod's claim-backed volumes."""
    pod = spec["headGroupSpec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes", [])
              if "persistentVolumeClaim" in v}
    return {m["mountPath"]: claims[m["name"]] for c in pod["containers"] for m in c.get("volumeMounts", [])
            if m["name"] in claims}


def test_the_rayjob_writes_its_study_to_a_volume_that_outlives_the_cluster():
    docs = _documents(DEPLOY / "kuberay" / "rayjob.yaml")
    study = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["study.yaml"])
    output_dir = Path(load_config(study).resolved_output_dir)
    job = next(d for d in docs if d["kind"] == "RayJob")
    mounts = _head_mounts(job["spec"]["rayClusterSpec"])
    (claim,) = [c for path, c in mounts.items() if output_dir.is_relative_to(path)]
    claims = [d for d in _documents(DEPLOY / "kuberay" / "studies-pvc.yaml") if d["kind"] == "PersistentVolumeClaim"]
    assert [c["metadata"]["name"] for c in claims] == [claim]
    assert not output_dir.is_relative_to("/tmp")
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert head["securityContext"]["fsGroup"] == 100  # the image's ray user (uid 1000, group users) can write it
    # a long-lived cluster's drivers write to the same claim
    cluster = _documents(DEPLOY / "kuberay" / "raycluster.yaml")[0]
    assert claim in _head_mounts(cluster["spec"]).values()


def test_the_image_context_leaves_out_secrets_runs_and_git(tmp_path: Path):
    """Docker's own matcher (docker-py's, as ``docker build`` sends the context) on a tree
    holding everything that must never be baked into the image, and what the build needs."""
    from docker.utils.build import exclude_paths

    never = ["deploy/mlflow/.env", ".env", "greentune-runs/study/trials.csv", "greentune-runs/study/ledger.json",
             ".git/config", ".git/objects/ab/cdef", "mlruns/0/meta.yaml", "mlflow.db", ".venv/bin/python",
             "tuner/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v/cache", "examples/greentune-runs/x/study.json",
             "mlflow-queue.jsonl", ".hypothesis/examples/x", "dist/greentune-0.1.0.whl"]
    needed = ["pyproject.toml", "README.md", "tuner/__init__.py", "tuner/cli.py", "objectives/__init__.py",
              "deploy/mlflow/.env.example", "deploy/Dockerfile", "examples/quickstart.yaml"]
    for name in never + needed:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    patterns = [line.strip() for line in (DEPLOY.parent / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sent = set(exclude_paths(str(tmp_path), patterns))
    assert not sent & set(never), sorted(sent & set(never))
    assert set(needed) <= sent, sorted(set(needed) - sent)


def test_aws_cluster_launcher_config_matches_rays_schema():
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((DEPLOY / "aws" / "ray-cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    assert config["provider"]["type"] == "aws"
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert nodes["gpu_worker"]["min_workers"] <= nodes["gpu_worker"]["max_workers"] <= config["max_workers"]
    assert not {"--privileged", "--user root"} & set(config["docker"]["worker_run_options"])  # not root by default
    config["idle_timeout_minute"] = 5  # a typo at the top level
    with pytest.raises(jsonschema.ValidationError, match="idle_timeout_minute"):
        jsonschema.validate(config, schema)


def test_mlflow_compose_file_is_valid_compose_with_postgres_s3_and_basic_auth():
    text = (DEPLOY / "mlflow" / "docker-compose.yaml").read_text()
    compose = compose_spec.PyCompose.from_yaml(text)  # raises on anything outside the spec
    assert set(compose.service_names()) == {"postgres", "minio", "create-bucket", "mlflow"}
    server = yaml.safe_load(text)["services"]["mlflow"]
    command = " ".join(server["entrypoint"])
    assert "--app-name basic-auth" in command
    assert "--backend-store-uri \"postgresql://" in command and "--artifacts-destination s3://" in command
    assert server["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" in server["environment"]
    with pytest.raises(ValueError, match="bogus"):
        compose_spec.PyCompose.from_yaml(text.replace("restart: unless-stopped", "bogus: 1", 1))
