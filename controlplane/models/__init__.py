"""The control plane's models, one module per domain."""

from .accounts import ApiToken, User
from .alerts import Alert, AlertCondition, AlertRule, Notification, NotificationAttempt
from .audit import AuditEvent
from .deployments import Deployment, DeploymentRevision, WorkerEvent
from .drift import DriftCheck
from .gateway import InferenceRecord
from .inventory import GPU, Node
from .jobs import JobRun, JobRunRequest, JobState, SchedulerLease
from .metrics import MetricRollup
from .quality import GoldenSet
from .registry import ModelVersion
from .rollouts import Rollout, RolloutEvent

__all__ = [
    "GPU",
    "Alert",
    "AlertCondition",
    "AlertRule",
    "ApiToken",
    "AuditEvent",
    "Deployment",
    "DeploymentRevision",
    "DriftCheck",
    "GoldenSet",
    "InferenceRecord",
    "JobRun",
    "JobRunRequest",
    "JobState",
    "MetricRollup",
    "ModelVersion",
    "Node",
    "Notification",
    "NotificationAttempt",
    "Rollout",
    "RolloutEvent",
    "SchedulerLease",
    "User",
    "WorkerEvent",
]
