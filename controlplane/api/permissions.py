"""Roles enforced on the server: viewers read, operators change, admins manage users, tokens and registry deletes."""

from __future__ import annotations

from rest_framework import permissions

from controlplane.choices import Role


def required_role(request, view) -> str:
    """The role an action needs: the view's ``role_for_action`` overrides, else read→viewer, write→operator."""
    action = getattr(view, "action", None)
    overrides = getattr(view, "role_for_action", {})
    if action in overrides:
        return overrides[action]
    if request.method in permissions.SAFE_METHODS:
        return Role.VIEWER
    if request.method == "DELETE":
        return getattr(view, "delete_role", Role.ADMIN)
    return getattr(view, "write_role", Role.OPERATOR)


class RolePermission(permissions.BasePermission):
    """Authenticated users whose role covers the action."""

    message = "Your role does not allow this action."

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        role = required_role(request, view)
        self.message = f"This action needs the {role} role; you have {user.effective_role}."
        return user.has_role(role)
