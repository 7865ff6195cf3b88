"""The control plane's models, one module per domain."""

from .accounts import ApiToken, User
from .audit import AuditEvent
from .deployments import Deployment, DeploymentRevision, WorkerEvent
from .gateway import InferenceRecord
from .inventory import GPU, Node
from .jobs import JobRun, JobRunRequest, JobState, SchedulerLease
from .registry import ModelVersion

__all__ = [
    "GPU",
    "ApiToken",
    "AuditEvent",
    "Deployment",
    "DeploymentRevision",
    "InferenceRecord",
    "JobRun",
    "JobRunRequest",
    "JobState",
    "ModelVersion",
    "Node",
    "SchedulerLease",
    "User",
    "WorkerEvent",
]
