"""Helpers shared by the dashboard pages."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import redirect, render

from controlplane.choices import AuditSource
from controlplane.forms import apply_errors
from controlplane.services import audit
from controlplane.services.errors import Conflict, InvalidInput


def actor(request) -> audit.Actor:
    return audit.Actor(request.user, AuditSource.DASHBOARD)


def role_required(role: str):
    """Refuse users below ``role`` with a 403 page that says which role is needed."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.has_role(role):
                context = {"needed": role, "have": request.user.effective_role}
                return render(request, "403.html", context, status=403)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def form_page(
    request,
    form,
    *,
    title: str,
    save: Callable[[], object],
    success: Callable[[object], str],
    template: str = "form.html",
    context: dict | None = None,
    done: str = "Saved.",
):
    """Validate ``form``, call ``save`` (a service call); on success redirect, on bad input show the errors."""
    if request.method == "POST" and form.is_valid():
        try:
            result = save()
        except InvalidInput as exc:
            apply_errors(form, exc)
        except Conflict as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, done)
            return redirect(success(result))
    status = 400 if request.method == "POST" else 200
    return render(request, template, {"form": form, "title": title, **(context or {})}, status=status)


def paginate(request, queryset, per_page: int = 50):
    return Paginator(queryset, per_page).get_page(request.GET.get("page"))
