"""OpenAPI descriptions for our own authentication classes."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.api.authentication.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal API token: create one in the dashboard (API tokens) or with "
            "`python manage.py create_api_token USERNAME`.",
        }


# --- postprocessing: summaries, and the error answers every operation can give -------------------------------------

ERROR = {
    "type": "object",
    "description": "An error: ``detail`` says what went wrong (``code`` names the kind, when there is one).",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "required": ["detail"],
}
VALIDATION_ERROR = {
    "type": "object",
    "description": "Bad input: each field (``non_field_errors`` for the whole body; nested for ``config``) maps to "
    "its problems, or ``detail`` says what is wrong.",
    "additionalProperties": {},
}
ERRORS = {
    "400": ("Bad input, the fields named with their problems.", "ValidationError"),
    "401": ("Not signed in: no session and no valid bearer token.", "Error"),
    "403": ("Signed in, but the role does not allow this.", "Error"),
    "404": ("No such object.", "Error"),
    "409": ("Valid, but it clashes with the current state.", "Error"),
    "413": ("The body is over MAX_REQUEST_BYTES.", "Error"),
    "415": ("The body is not JSON.", "Error"),
}
BODY_METHODS = ("post", "put", "patch")
MIXIN_DOC = "Refuse keys the serializer does not know"

# Operations whose first sentence in the description is not a summary (the viewset's docstring stands there).
SUMMARIES = {
    ("post", "/api/v1/alerts/{id}/acknowledge/"): "Acknowledge an alert",
    ("post", "/api/v1/alerts/{id}/resolve/"): "Resolve an alert",
    ("get", "/api/v1/deployments/{id}/revisions/"): "List a deployment's revisions",
    ("post", "/api/v1/deployments/{id}/rollback/"): "Roll a deployment back to an earlier revision",
    ("get", "/api/v1/deployments/{id}/rollouts/"): "List a deployment's rollouts",
    ("post", "/api/v1/deployments/{id}/rollouts/"): "Start a rollout on a deployment",
    ("post", "/api/v1/deployments/{id}/start/"): "Start a deployment's worker",
    ("post", "/api/v1/deployments/{id}/stop/"): "Stop a deployment's worker",
    ("post", "/api/v1/notifications/{id}/retry/"): "Send a notification again",
    ("post", "/api/v1/rollouts/{id}/abort/"): "Abort a rollout",
    ("get", "/api/v1/rollouts/{id}/events/"): "List a rollout's events",
    ("post", "/api/v1/rollouts/{id}/pause/"): "Pause a rollout",
    ("post", "/api/v1/rollouts/{id}/promote/"): "Promote a rollout's canary",
    ("post", "/api/v1/rollouts/{id}/resume/"): "Resume a rollout",
    ("post", "/api/v1/rollouts/{id}/rollback/"): "Roll a rollout back",
    ("delete", "/api/v1/tokens/{id}/"): "Revoke an API token",
    ("delete", "/api/v1/sessions/{id}/"): "End a live session",
    ("get", "/api/v1/me/"): "Get the signed-in user",
    ("get", "/api/v1/usage/"): "Summarize usage",
    ("get", "/api/v1/metrics/"): "List the metrics endpoints",
    ("get", "/api/v1/deployments/{id}/worker/"): "Get a deployment's worker state, live config and stats",
    ("get", "/api/v1/deployments/{id}/cache/"): "Get a deployment's response-cache statistics",
}
# Answers beyond the rule in postprocess(): a session id is "<deployment id>:<session id>", checked by hand.
EXTRA_ERRORS = {("delete", "/api/v1/sessions/{id}/"): ["400"]}
SINGULAR = {"audit-events": "audit event", "model-versions": "model version", "gpus": "GPU", "tokens": "API token"}


def _summary(method: str, path: str, operation: dict) -> str:
    if (method, path) in SUMMARIES:
        return SUMMARIES[method, path]
    parts = path.removeprefix("/api/v1/").strip("/").split("/")
    resource = parts[0]
    singular = SINGULAR.get(resource, resource.replace("-", " ").removesuffix("s"))
    detail = len(parts) > 1 and parts[1].startswith("{")
    if parts[2 if detail else 1 :]:  # an extra action: its own docstring's first sentence
        description = (operation.get("description") or "").replace("\n", " ")
        first = description.split(". ")[0].split(" (")[0].split(": ")[0].strip().rstrip(".")
        return first.replace("``", "") or " ".join(parts[1:]).replace("-", " ").capitalize()
    verbs = {"get": "Get", "put": "Replace", "patch": "Update", "delete": "Delete"}
    if not detail:
        plural = "GPUs" if resource == "gpus" else "API tokens" if resource == "tokens" else resource.replace("-", " ")
        return f"List {plural}" if method == "get" else f"Create {_article(singular)} {singular}"
    return f"{verbs[method]} {_article(singular)} {singular}"


def _article(noun: str) -> str:
    return "an" if noun[0].lower() in "aeio" else "a"  # a user, an alert


def _tag(path: str) -> str:
    return path.removeprefix("/api/v1/").strip("/").split("/")[0] or "api"


def postprocess(result: dict, generator: object, request: object, public: bool) -> dict:
    """Every operation gets its resource's tag, a summary, and the error answers it can give with their body."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR
    schemas["ValidationError"] = VALIDATION_ERROR
    for name, component in schemas.items():
        if component.get("description", "").startswith(MIXIN_DOC):  # a docstring inherited from StrictMixin
            del component["description"]
        # request bodies: the serializers refuse keys they do not know (StrictMixin)
        if name.endswith("Request") and component.get("type") == "object" and "properties" in component:
            component.setdefault("additionalProperties", False)
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            operation["tags"] = [_tag(path)]
            operation.setdefault("summary", _summary(method, path, operation))
            codes = ["401", "403"]
            has_query = any(p.get("in") == "query" for p in operation.get("parameters", []))
            if method in BODY_METHODS or has_query:
                codes.append("400")
            if "{" in path:
                codes.append("404")
            if method in (*BODY_METHODS, "delete"):
                codes.append("409")
            if method in BODY_METHODS:
                codes += ["413", "415"]
            codes += EXTRA_ERRORS.get((method, path), [])
            responses = operation.setdefault("responses", {})
            for code in codes:
                description, component = ERRORS[code]
                responses.setdefault(
                    code,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}},
                    },
                )
    return result
