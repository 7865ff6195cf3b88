"""Request guards that apply to every path: a body-size limit and login for every page.

Both work in sync and async mode, so that async views (the /v1 gateway) never hop to a thread for them.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import JsonResponse

# Paths that answer without a login. The API and the gateway authenticate their callers themselves (tokens or
# session, 401 in JSON rather than a redirect), so they are passed through here.
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/accounts/login/", "/static/")
SELF_AUTHENTICATING_PREFIXES = ("/api/", "/v1/", "/ws/", "/metrics")


def too_large_response(path: str = "") -> JsonResponse:
    limit = settings.MAX_REQUEST_BYTES
    message = f"Request body is larger than the limit of {limit} bytes."
    if path.startswith("/v1/"):
        body = {
            "error": {"message": message, "type": "invalid_request_error", "param": None, "code": "request_too_large"}
        }
        return JsonResponse(body, status=413)
    return JsonResponse({"detail": message, "code": "request_too_large"}, status=413)


class DualModeMiddleware:
    """Middleware whose ``check(request)`` returns a response to short-circuit, or None to carry on."""

    async_capable = True
    sync_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return self.check(request) or self.get_response(request)

    async def _acall(self, request):
        return await self.acheck(request) or await self.get_response(request)

    def check(self, request):
        raise NotImplementedError

    async def acheck(self, request):
        return self.check(request)


class BodySizeLimitMiddleware(DualModeMiddleware):
    """Refuse bodies over ``MAX_REQUEST_BYTES`` with 413 before anything reads them."""

    def check(self, request):
        length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            size = int(length)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number."}, status=400)
        if size > settings.MAX_REQUEST_BYTES:
            return too_large_response(request.path_info)
        return None


class LoginRequiredMiddleware(DualModeMiddleware):
    """Every dashboard page needs a signed-in user; health checks, the login page and static files do not."""

    @staticmethod
    def _public(request) -> bool:
        return request.path_info.startswith(PUBLIC_PREFIXES + SELF_AUTHENTICATING_PREFIXES)

    def check(self, request):
        if self._public(request) or request.user.is_authenticated:
            return None
        return redirect_to_login(request.get_full_path())

    async def acheck(self, request):
        if self._public(request) or (await request.auser()).is_authenticated:
            return None
        return redirect_to_login(request.get_full_path())
