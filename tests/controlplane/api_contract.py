"""The CRUD contract every REST resource keeps, written once (in the manner of NetBox's APIViewTestCases).

A resource's test class sets ``url``, ``model``, the roles, and provides fixtures ``instance``, ``create_payload`` and
``update_payload``; ``bad_cases`` maps a case name to (changes to the create payload, the field the error must name).
A change value of ``DROP`` removes the key.
"""

from __future__ import annotations

import pytest

from controlplane.choices import Role
from controlplane.models import AuditEvent

DROP = object()


def payload_with(base: dict, changes: dict) -> dict:
    data = dict(base)
    for key, value in changes.items():
        if value is DROP:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def lower_role(role: str) -> str | None:
    order = [Role.VIEWER, Role.OPERATOR, Role.ADMIN]
    index = order.index(role)
    return order[index - 1] if index else None


@pytest.mark.django_db
class CrudContract:
    url: str
    model: type
    write_role: str = Role.OPERATOR
    delete_role: str | None = Role.ADMIN  # None: the resource cannot be deleted through the API
    bad_cases: dict = {}

    def detail_url(self, obj) -> str:
        return f"{self.url}{obj.pk}/"

    def prepare_changes(self, changes: dict, request) -> dict:
        """Hook: fill in values that depend on fixtures (a new dict; the class's cases stay as written)."""
        return changes

    def test_anonymous_callers_get_401(self, clients, instance):
        anonymous = clients["anonymous"]
        assert anonymous.get(self.url).status_code == 401
        assert anonymous.get(self.detail_url(instance)).status_code == 401
        assert anonymous.post(self.url, {}, format="json").status_code == 401

    def test_a_wrong_token_gets_401(self, clients, instance):
        client = clients["anonymous"]
        client.credentials(HTTP_AUTHORIZATION="Bearer lcp_not-a-real-token")
        assert client.get(self.url).status_code == 401

    def test_viewers_list_and_read(self, clients, instance):
        listing = clients[Role.VIEWER].get(self.url)
        assert listing.status_code == 200
        assert instance.pk in [row["id"] for row in listing.json()["results"]]
        detail = clients[Role.VIEWER].get(self.detail_url(instance))
        assert detail.status_code == 200 and detail.json()["id"] == instance.pk

    def test_a_role_below_the_writer_cannot_create(self, clients, instance, create_payload):
        below = lower_role(self.write_role)
        before = self.model.objects.count()
        response = clients[below].post(self.url, create_payload, format="json")
        assert response.status_code == 403
        assert "role" in response.json()["detail"]
        assert self.model.objects.count() == before

    def test_the_writer_creates_and_the_change_is_audited(self, clients, instance, create_payload):
        events = AuditEvent.objects.count()
        response = clients[self.write_role].post(self.url, create_payload, format="json")
        assert response.status_code == 201, response.json()
        created = self.model.objects.get(pk=response.json()["id"])
        assert AuditEvent.objects.count() > events
        event = AuditEvent.objects.filter(object_id=str(created.pk)).latest("id")
        assert event.action.endswith(".create") and event.after is not None

    def test_the_writer_updates(self, clients, instance, update_payload):
        response = clients[self.write_role].patch(self.detail_url(instance), update_payload, format="json")
        assert response.status_code == 200, response.json()
        body = clients[Role.VIEWER].get(self.detail_url(instance)).json()
        for key, value in update_payload.items():
            if isinstance(value, dict):
                assert {k: body[key][k] for k in value} == value
            else:
                assert body[key] == value

    def test_a_role_below_the_writer_cannot_update(self, clients, instance, update_payload):
        response = clients[lower_role(self.write_role)].patch(self.detail_url(instance), update_payload, format="json")
        assert response.status_code == 403

    def test_delete_follows_the_role_rules(self, clients, instance):
        if self.delete_role is None:
            response = clients[Role.ADMIN].delete(self.detail_url(instance))
            assert response.status_code == 405
            assert self.model.objects.filter(pk=instance.pk).exists()
            return
        assert clients[lower_role(self.delete_role)].delete(self.detail_url(instance)).status_code == 403
        assert self.model.objects.filter(pk=instance.pk).exists()
        assert clients[self.delete_role].delete(self.detail_url(instance)).status_code == 204
        assert not self.model.objects.filter(pk=instance.pk).exists()

    def test_bad_input_gets_400_naming_the_field_and_changes_nothing(
        self, clients, instance, create_payload, bad_case, request
    ):
        changes, field = bad_case[1]
        changes = self.prepare_changes(changes, request)
        objects, events = self.model.objects.count(), AuditEvent.objects.count()
        response = clients[Role.ADMIN].post(self.url, payload_with(create_payload, changes), format="json")
        assert response.status_code == 400, response.content
        assert field in response.json(), response.json()
        assert self.model.objects.count() == objects
        assert AuditEvent.objects.count() == events

    def test_malformed_json_gets_400(self, clients, instance):
        response = clients[Role.ADMIN].post(self.url, data="{not json", content_type="application/json")
        assert response.status_code == 400
        assert "JSON parse error" in response.json()["detail"]
