"""Recording changes in the audit log. Every service function that changes state calls ``record``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, overload

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.forms.models import model_to_dict

from controlplane.choices import AuditSource
from controlplane.models import AuditEvent

__all__ = ["SYSTEM", "Actor", "record", "snapshot"]


@dataclass(frozen=True)
class Actor:
    """Who makes a change and through what: a user (None for the system) and the source."""

    user: Any = None
    source: str = AuditSource.SYSTEM

    @property
    def name(self) -> str:
        return self.user.get_username() if self.user is not None else "system"


SYSTEM = Actor()


@overload
def snapshot(instance: models.Model, exclude: tuple[str, ...] = ()) -> dict[str, Any]: ...
@overload
def snapshot(instance: models.Model | None, exclude: tuple[str, ...] = ()) -> dict[str, Any] | None: ...


def snapshot(instance: models.Model | None, exclude: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """A JSON-ready dict of a model's fields (foreign keys as ids, many-to-many as id lists)."""
    if instance is None:
        return None
    data = model_to_dict(instance, exclude=list(exclude))
    for field in instance._meta.many_to_many:
        if field.name in data:
            data[field.name] = sorted(obj.pk for obj in data[field.name])
    for concrete in instance._meta.concrete_fields:
        if concrete.name not in exclude and concrete.name not in data:
            data[concrete.name] = getattr(instance, concrete.attname)
    data["id"] = instance.pk
    return json.loads(json.dumps(data, cls=DjangoJSONEncoder))


def record(
    actor: Actor,
    action: str,
    instance: models.Model | None = None,
    *,
    before: dict | None = None,
    after: dict | None = None,
    object_type: str | None = None,
    object_id: str | int | None = None,
    object_repr: str | None = None,
    message: str = "",
) -> AuditEvent:
    """Write one audit event. Call it inside the transaction that makes the change, so both commit or neither."""
    return AuditEvent.objects.create(
        actor=actor.user,
        actor_name=actor.name,
        source=actor.source,
        action=action,
        object_type=object_type or (instance._meta.model_name or "" if instance is not None else ""),
        object_id=str(object_id if object_id is not None else (instance.pk if instance is not None else "")),
        object_repr=(object_repr or (str(instance) if instance is not None else ""))[:255],
        before=before,
        after=after,
        message=message,
    )
