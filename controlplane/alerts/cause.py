"""The likely cause of an alert: what changed last on its deployment before it fired.

Computed once, when the alert fires, and stored on it, so later changes do not rewrite what the reader was told:
the latest config revision (with its diff against the one before, model version included), the router weights it
set, and the latest audit event on the deployment (a rollout step, a rollback, a restart by an operator).
"""

from __future__ import annotations

import json

from django.core.serializers.json import DjangoJSONEncoder

from controlplane.models import AuditEvent, Deployment
from controlplane.services.deployments import revision_diff

__all__ = ["likely_cause"]


def _jsonable(value):
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def likely_cause(deployment: Deployment | None) -> dict | None:
    """What changed last on ``deployment`` (None when there is no deployment or no revision)."""
    if deployment is None:
        return None
    revisions = deployment.revisions.select_related("model_version", "created_by").order_by("-number")
    latest = revisions.first()
    if latest is None:
        return None
    previous = revisions.filter(number__lt=latest.number).first()
    events = AuditEvent.objects.filter(object_type="deployment", object_id=str(deployment.pk)).order_by("-at", "-id")
    event = events.first()
    cause = {
        "revision": latest.number,
        "revision_at": latest.created_at,
        "revision_by": latest.created_by.get_username() if latest.created_by else "system",
        "comment": latest.comment,
        "restored_from": latest.restored_from,
        "model_version": str(latest.model_version),
        "router_weights": latest.config.get("router_weights"),
        "previous_revision": previous.number if previous else None,
        "changes": revision_diff(previous, latest) if previous else [],
        "diff_path": (
            f"/deployments/{deployment.pk}/?from={previous.number}&to={latest.number}#diff"
            if previous
            else f"/deployments/{deployment.pk}/#revisions"
        ),
        "last_event": None,
    }
    if event is not None:
        cause["last_event"] = {
            "action": event.action,
            "at": event.at,
            "actor": event.actor_name,
            "message": event.message,
        }
    return _jsonable(cause)
