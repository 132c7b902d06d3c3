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
    assert cfg.resources_per_trial.gpu == 1 and cfg.power_limit_range_w == (150.0, 250.0)


def test_aws_cluster_launcher_config_matches_rays_schema():
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    config = yaml.safe_load((DEPLOY / "aws" / "ray-cluster.yaml").read_text())
    jsonschema.validate(config, schema)
    assert config["provider"]["type"] == "aws"
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0}
    assert nodes["gpu_worker"]["min_workers"] <= nodes["gpu_worker"]["max_workers"] <= config["max_workers"]
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
