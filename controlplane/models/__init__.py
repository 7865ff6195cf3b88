"""The control plane's models, one module per domain."""

from .accounts import ApiToken, User
from .alerts import Alert, AlertCondition, AlertRule, Notification, NotificationAttempt
from .audit import AuditEvent
from .deployments import Deployment, DeploymentRevision, WorkerEvent
from .gateway import InferenceRecord
from .inventory import GPU, Node
from .registry import ModelVersion

__all__ = [
    "GPU",
    "Alert",
    "AlertCondition",
    "AlertRule",
    "ApiToken",
    "AuditEvent",
    "Deployment",
    "DeploymentRevision",
    "InferenceRecord",
    "ModelVersion",
    "Node",
    "Notification",
    "NotificationAttempt",
    "User",
    "WorkerEvent",
]
