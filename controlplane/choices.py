"""Named states and kinds. Logic compares against these constants, never against bare strings."""

from django.db import models

__all__ = [
    "AlertKind",
    "AlertSeverity",
    "AlertState",
    "AuditSource",
    "DeploymentStatus",
    "DesiredState",
    "DriftKind",
    "DriftVerdict",
    "JobOutcome",
    "JobTrigger",
    "ModelFormat",
    "ModelStatus",
    "NodeRole",
    "NodeStatus",
    "NotificationAttemptOutcome",
    "NotificationEvent",
    "NotificationStatus",
    "Precision",
    "Role",
    "RolloutStatus",
    "RolloutStrategy",
    "SchedulerState",
    "TokenScope",
    "WorkerEventKind",
    "WorkerReply",
]


class Role(models.TextChoices):
    """What a user may do. Each role includes the ones before it."""

    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    ADMIN = "admin", "Admin"

    @classmethod
    def rank(cls, role: str) -> int:
        order: list[str] = [cls.VIEWER, cls.OPERATOR, cls.ADMIN]
        return order.index(role)


class TokenScope(models.TextChoices):
    FULL = "full", "Full (REST API and inference, within the user's role)"
    INFERENCE = "inference", "Inference only (/v1)"


class ModelFormat(models.TextChoices):
    MOE = "moe", "Native mixture-of-experts checkpoint"
    HF = "hf", "Local Hugging Face checkpoint"


class Precision(models.TextChoices):
    FP32 = "fp32", "FP32"
    FP16 = "fp16", "FP16"
    BF16 = "bf16", "BF16"
    INT8 = "int8", "INT8"

    @classmethod
    def bytes_per_param(cls, precision: str) -> float:
        table: dict[str, float] = {cls.FP32: 4.0, cls.FP16: 2.0, cls.BF16: 2.0, cls.INT8: 1.0}
        return table[precision]

    @classmethod
    def kv_bytes_per_value(cls, precision: str) -> int:
        """The KV cache is kept in the activation dtype: fp32 for fp32 and int8 (dynamic quantization), else 2."""
        table: dict[str, int] = {cls.FP32: 4, cls.FP16: 2, cls.BF16: 2, cls.INT8: 4}
        return table[precision]


class ModelStatus(models.TextChoices):
    REGISTERED = "registered", "Registered"
    VALIDATED = "validated", "Validated"
    DEPRECATED = "deprecated", "Deprecated"


class NodeRole(models.TextChoices):
    CONTROL = "control", "Control plane"
    WORKER = "worker", "Worker"
    COMBINED = "combined", "Control plane and worker"


class NodeStatus(models.TextChoices):
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    DRAINING = "draining", "Draining"


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class DeploymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    STARTING = "starting", "Starting"
    RUNNING = "running", "Running"
    DEGRADED = "degraded", "Degraded"
    STOPPED = "stopped", "Stopped"
    FAILED = "failed", "Failed"


class WorkerEventKind(models.TextChoices):
    STARTED = "started", "Started"
    STOPPED = "stopped", "Stopped"
    EXITED = "exited", "Exited"
    UNHEALTHY = "unhealthy", "Unhealthy"
    RESTARTED = "restarted", "Restarted"
    CONFIG_APPLIED = "config_applied", "Config applied"
    SWAPPED = "swapped", "Model swapped"
    LEAK_RESTART = "leak_restart", "Restarted for a memory leak"
    ERROR = "error", "Error"


class AuditSource(models.TextChoices):
    API = "api", "REST API"
    DASHBOARD = "dashboard", "Dashboard"
    SYSTEM = "system", "System"
    CLI = "cli", "Command line"


class RolloutStrategy(models.TextChoices):
    CANARY = "canary", "Canary"
    BLUE_GREEN = "blue_green", "Blue-green"


class RolloutStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    PROMOTED = "promoted", "Promoted"
    ROLLED_BACK = "rolled_back", "Rolled back"
    ABORTED = "aborted", "Aborted"
    FAILED = "failed", "Failed"

    @classmethod
    def active(cls) -> tuple[str, ...]:
        return (cls.PENDING, cls.RUNNING, cls.PAUSED)


class DriftKind(models.TextChoices):
    QUALITY = "quality", "Quality (golden set)"
    LATENCY = "latency", "Latency change point"
    DISTRIBUTION = "distribution", "Output distribution"


class DriftVerdict(models.TextChoices):
    OK = "ok", "No drift"
    DRIFT = "drift", "Drift"
    INCONCLUSIVE = "inconclusive", "Not enough data"
    ERROR = "error", "Error"


class AlertState(models.TextChoices):
    FIRING = "firing", "Firing"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class AlertSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class JobOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    SUCCESS = "success", "Success"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (already running)"
    MISSED = "missed", "Missed"


class AlertKind(models.TextChoices):
    """What an alert rule watches (the value rules store). Each kind is declared in the alerts: evaluated from stored
    rows (``alerts.evaluators.EVALUATORS``) or signalled by other parts (``alerts.kinds.SIGNALLED``)."""

    DRIFT = "drift", "Drift check verdict"
    LEAK = "leak", "Memory leak detected"
    LATENCY = "latency", "Latency percentile above a threshold"
    ERROR_RATE = "error_rate", "Error rate above a threshold"
    WORKER_RESTART = "worker_restart", "Worker restarts or exits"
    JOB_FAILURE = "job_failure", "Scheduled job failed"
    SCHEDULER_HEARTBEAT = "scheduler_heartbeat", "Scheduler stopped running jobs"
    ROLLOUT = "rollout", "Rollout rolled back or failed"
    NODE_UNATTENDED = "node_unattended", "Node without a running control plane"
    REDIS_UNREACHABLE = "redis_unreachable", "Redis does not answer"


class NotificationEvent(models.TextChoices):
    FIRING = "firing", "Firing"
    REMINDER = "reminder", "Still firing (re-notification)"
    RESOLVED = "resolved", "Resolved"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class NotificationAttemptOutcome(models.TextChoices):
    SENT = "sent", "Sent"
    TEMPORARY_FAILURE = "temporary_failure", "Temporary failure"
    PERMANENT_FAILURE = "permanent_failure", "Permanent failure"


class JobTrigger(models.TextChoices):
    """What started a job run: its schedule, or a person asking for it now."""

    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Run now"


class SchedulerState(models.TextChoices):
    """How the scheduler looks from outside, judged from its lock row (see jobs/heartbeat.py)."""

    RUNNING = "running", "Running"
    NEVER_RAN = "never_ran", "No scheduler has run yet"
    STOPPED = "stopped", "Stopped (lock not renewed)"
    STUCK = "stuck", "Alive, but jobs do not run"


class WorkerReply(models.TextChoices):
    """How a worker answered a control call made by a job (recorded per deployment in the run's result)."""

    OK = "ok", "Answered"
    UNAVAILABLE = "unavailable", "Did not answer"
    ERROR = "error", "Answered with an error"
