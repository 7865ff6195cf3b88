"""Request guards that apply to every path: a body-size limit and login for every page."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import JsonResponse

# Paths that answer without a login. The API and the gateway authenticate their callers themselves (tokens or
# session, 401 in JSON rather than a redirect), so they are passed through here.
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/accounts/login/", "/static/", "/metrics")
SELF_AUTHENTICATING_PREFIXES = ("/api/", "/v1/", "/ws/")


class BodySizeLimitMiddleware:
    """Refuse bodies over ``MAX_REQUEST_BYTES`` with 413 before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            size = int(length)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number."}, status=400)
        if size > settings.MAX_REQUEST_BYTES:
            return too_large_response()
        return self.get_response(request)


def too_large_response() -> JsonResponse:
    limit = settings.MAX_REQUEST_BYTES
    return JsonResponse(
        {"detail": f"Request body is larger than the limit of {limit} bytes.", "code": "request_too_large"},
        status=413,
    )


class LoginRequiredMiddleware:
    """Every dashboard page needs a signed-in user; health checks, the login page and static files do not."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if path.startswith(PUBLIC_PREFIXES + SELF_AUTHENTICATING_PREFIXES):
            return self.get_response(request)
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        return self.get_response(request)
