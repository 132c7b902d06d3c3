"""JSON schemas for the KubeRay ``RayCluster`` and ``RayJob`` fields that deploy/ uses.

No PyPI package ships KubeRay's CRDs, so these are written by hand from the
``ray.io/v1`` CRDs (ray-operator/config/crd/bases in the KubeRay repository): the
same field names, types, enums and required keys, for the subset of fields used, with
unknown keys rejected so that a typo fails. Pod templates inside them are checked
separately against the real Kubernetes ``PodTemplateSpec`` schema (kubernetes-validate).
"""

from __future__ import annotations

_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_TEMPLATE = {"type": "object", "required": ["spec"]}  # a PodTemplateSpec, checked on its own

AUTOSCALER_OPTIONS = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "upscalingMode": {"type": "string", "enum": ["Default", "Aggressive", "Conservative"]},
        "idleTimeoutSeconds": {"type": "integer", "format": "int32"},
        "image": {"type": "string"},
        "imagePullPolicy": {"type": "string"},
        "resources": {"type": "object"},
        "env": {"type": "array"},
        "envFrom": {"type": "array"},
        "volumeMounts": {"type": "array"},
        "securityContext": {"type": "object"},
        "version": {"type": "string", "enum": ["v1", "v2"]},
    },
}

HEAD_GROUP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["template"],
    "properties": {
        "rayStartParams": _STR_MAP,
        "serviceType": {"type": "string"},
        "enableIngress": {"type": "boolean"},
        "headService": {"type": "object"},
        "template": _TEMPLATE,
    },
}

WORKER_GROUP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["groupName", "template"],
    "properties": {
        "groupName": {"type": "string"},
        "replicas": {"type": "integer", "format": "int32", "minimum": 0},
        "minReplicas": {"type": "integer", "format": "int32", "minimum": 0},
        "maxReplicas": {"type": "integer", "format": "int32", "minimum": 0},
        "numOfHosts": {"type": "integer", "format": "int32", "minimum": 1},
        "idleTimeoutSeconds": {"type": "integer", "format": "int32"},
        "suspend": {"type": "boolean"},
        "rayStartParams": _STR_MAP,
        "scaleStrategy": {"type": "object"},
        "template": _TEMPLATE,
    },
}

RAY_CLUSTER_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "required": ["headGroupSpec"],
    "properties": {
        "rayVersion": {"type": "string"},
        "enableInTreeAutoscaling": {"type": "boolean"},
        "autoscalerOptions": AUTOSCALER_OPTIONS,
        "headServiceAnnotations": _STR_MAP,
        "suspend": {"type": "boolean"},
        "managedBy": {"type": "string"},
        "headGroupSpec": HEAD_GROUP,
        "workerGroupSpecs": {"type": "array", "items": WORKER_GROUP},
    },
}

_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}

RAY_CLUSTER = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": _METADATA,
        "spec": RAY_CLUSTER_SPEC,
    },
}

RAY_JOB = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "entrypoint": {"type": "string"},
                "runtimeEnvYAML": {"type": "string"},
                "jobId": {"type": "string"},
                "submissionMode": {"type": "string",
                                   "enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
                "shutdownAfterJobFinishes": {"type": "boolean"},
                "ttlSecondsAfterFinished": {"type": "integer", "format": "int32", "minimum": 0},
                "activeDeadlineSeconds": {"type": "integer", "format": "int32", "minimum": 0},
                "backoffLimit": {"type": "integer", "format": "int32"},
                "suspend": {"type": "boolean"},
                "clusterSelector": _STR_MAP,
                "entrypointNumCpus": {"type": "number"},
                "entrypointNumGpus": {"type": "number"},
                "entrypointResources": {"type": "string"},
                "submitterPodTemplate": _TEMPLATE,
                "rayClusterSpec": RAY_CLUSTER_SPEC,
            },
        },
    },
}

SCHEMAS = {"RayCluster": RAY_CLUSTER, "RayJob": RAY_JOB}
