"""The control plane's models, one module per domain."""

from .accounts import ApiToken, User
from .audit import AuditEvent
from .deployments import Deployment, DeploymentRevision, WorkerEvent
from .gateway import InferenceRecord
from .inventory import GPU, Node
from .quality import GoldenSet
from .registry import ModelVersion
from .rollouts import Rollout, RolloutEvent

__all__ = [
    "GPU",
    "ApiToken",
    "AuditEvent",
    "Deployment",
    "DeploymentRevision",
    "GoldenSet",
    "InferenceRecord",
    "ModelVersion",
    "Node",
    "Rollout",
    "RolloutEvent",
    "User",
    "WorkerEvent",
]
