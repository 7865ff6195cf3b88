"""Audit log, API tokens and users."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from controlplane.choices import Role
from controlplane.forms import TokenForm, UserForm, apply_errors
from controlplane.models import ApiToken, AuditEvent, User
from controlplane.services import accounts
from controlplane.services.errors import InvalidInput

from .base import actor, paginate, role_required

AUDIT_FILTERS = ("action", "object_type", "object_id", "actor_name", "source")


def audit_list(request):
    queryset = AuditEvent.objects.all()
    filters = {key: request.GET[key] for key in AUDIT_FILTERS if request.GET.get(key)}
    page = paginate(request, queryset.filter(**filters))
    return render(request, "audit/list.html", {"page": page, "filters": filters})


def token_list(request):
    form = TokenForm(request.POST or None)
    new_token = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                _, new_token = accounts.issue_token(actor(request), request.user, **form.cleaned_data)
                form = TokenForm()
            except InvalidInput as exc:
                apply_errors(form, exc)
                status = 400
        else:
            status = 400
    tokens = ApiToken.objects.filter(user=request.user)
    context = {"tokens": tokens, "form": form, "new_token": new_token}
    return render(request, "accounts/tokens.html", context, status=status)


@require_POST
def token_revoke(request, pk):
    queryset = ApiToken.objects.all() if request.user.has_role(Role.ADMIN) else request.user.api_tokens.all()
    token = get_object_or_404(queryset, pk=pk)
    accounts.revoke_token(actor(request), token)
    messages.success(request, f"Revoked {token}.")
    target = request.POST.get("next", "")
    safe = url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()})
    return redirect(target if target and safe else "/tokens/")


@role_required(Role.ADMIN)
def user_list(request):
    users = User.objects.order_by("username")
    return render(request, "accounts/users.html", {"users": users})


@role_required(Role.ADMIN)
def user_form(request, pk=None):
    user = get_object_or_404(User, pk=pk) if pk else None
    initial = (
        {"username": user.username, "email": user.email, "role": user.role, "is_active": user.is_active} if user else {}
    )
    form = UserForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = dict(form.cleaned_data)
        try:
            if user is None:
                if not data["password"]:
                    raise InvalidInput.field("password", "is required for a new user")
                accounts.create_user(actor(request), **data)
            else:
                accounts.update_user(actor(request), user, **data)
        except InvalidInput as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, "User saved.")
            return redirect("/users/")
    title = f"Edit {user.username}" if user else "Add a user"
    tokens = user.api_tokens.all() if user else []
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/user_form.html", {"form": form, "title": title, "tokens": tokens}, status=status)
