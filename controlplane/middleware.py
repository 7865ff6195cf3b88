"""Request guards that apply to every path (a body-size limit, login for every page) and response rules (errors
under /api/ in JSON, the Content-Security-Policy header).

All work in sync and async mode, so that async views (the /v1 gateway) never hop to a thread for them.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase

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


class ResponseMiddleware:
    """Middleware whose ``process(request, response)`` may replace each response; sync and async."""

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
        return self.process(request, self.get_response(request))

    async def _acall(self, request):
        return self.process(request, await self.get_response(request))

    def process(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        raise NotImplementedError


class ApiErrorsAsJsonMiddleware(ResponseMiddleware):
    """Under /api/ an error is JSON, whoever answered it: Django's own 404 for a path no route matches, or its 500
    page when something failed outside DRF's exception handler."""

    def process(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            request.path_info.startswith("/api/")
            and response.status_code >= 400
            and response.get("Content-Type", "").startswith("text/html")
        ):
            code = "not_found" if response.status_code == 404 else "error"
            if response.status_code >= 500:
                code = "server_error"
            body = {"detail": response.reason_phrase.capitalize() + ".", "code": code}
            return JsonResponse(body, status=response.status_code)
        return response


# Pages may load scripts, styles and images from this server only; no inline scripts or event handlers, no plugins,
# no framing. The websocket (/ws/metrics/) is this host's, as ws: or wss:. The API reference pages (drf-spectacular's
# Swagger UI and ReDoc templates) configure themselves with an inline script and style: they alone allow inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' {websocket}; "
    "font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
REFERENCE_PAGES_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'"
)
REFERENCE_PAGES = ("/api/docs/", "/api/redoc/")


class ContentSecurityPolicyMiddleware(ResponseMiddleware):
    """The ``Content-Security-Policy`` header on every response that has none (Django 5.2 has no built-in one)."""

    def process(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if "Content-Security-Policy" in response:
            return response
        if request.path_info.startswith(REFERENCE_PAGES):
            response["Content-Security-Policy"] = REFERENCE_PAGES_POLICY
        else:
            scheme = "wss" if request.is_secure() else "ws"
            response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.format(
                websocket=f"{scheme}://{request.get_host()}"
            )
        return response
