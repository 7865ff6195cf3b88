"""Django settings. Every value comes from the environment (see README "Settings") with safe embedded defaults:
SQLite in var/, in-memory channel layer, local-memory cache, e-mails written to var/mail/."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from controlplane.conf import (
    env_bool,
    env_email,
    env_float,
    env_int,
    env_list,
    env_secret,
    env_str,
    persistent_secret_key,
    private_dir,
    private_file,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()
TESTING = "pytest" in sys.modules or (len(sys.argv) > 1 and sys.argv[1] == "test")

# --- core -------------------------------------------------------------------------------------------------------
SECRET_KEY = env_secret("SECRET_KEY") or persistent_secret_key(VAR_DIR / "secret_key")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The public address of the dashboard, used for links in alert e-mails.
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "axes",
    "controlplane",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "controlplane.middleware.ContentSecurityPolicyMiddleware",
    "controlplane.middleware.ApiErrorsAsJsonMiddleware",
    "controlplane.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "controlplane.middleware.LoginRequiredMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
ASGI_APPLICATION = "controlplane.asgi.application"
WSGI_APPLICATION = None
AUTH_USER_MODEL = "controlplane.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "controlplane.context_processors.scheduler",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------------------------------------------
_default_db = f"sqlite:///{VAR_DIR / 'controlplane.sqlite3'}"
try:
    DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _default_db), conn_max_age=0)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL cannot be used: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the dashboard read while the scheduler writes; IMMEDIATE transactions avoid lock upgrades failing.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests use a file too (not SQLite's shared in-memory database, whose table locks ignore the busy timeout), so
    # that concurrency behaves as in production.
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"lcp-test-{os.getpid()}.sqlite3")}
    if not TESTING:
        # var/ is the owner's alone (0700), and so is the database in it (0600): it holds token hashes and sessions
        private_dir(Path(DATABASES["default"]["NAME"]).parent)
        private_file(Path(DATABASES["default"]["NAME"]))
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- channel layer and cache: Redis when REDIS_URL is set, in-process otherwise ------------------------------------
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://")
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # Several control planes (or test runs) can share one Redis with their own prefixes.
            "CONFIG": {"hosts": [REDIS_URL], "prefix": env_str("CHANNELS_PREFIX", "lcp")},
        }
    }
    CACHES: dict[str, dict[str, Any]] = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "lcp"),
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "controlplane",
            "OPTIONS": {"MAX_ENTRIES": env_int("CACHE_MAX_ENTRIES", 10_000, minimum=100)},
        }
    }

# --- e-mail -------------------------------------------------------------------------------------------------------
if env_str("EMAIL_URL"):
    globals().update(env_email("EMAIL_URL", VAR_DIR / "mail"))
elif env_str("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = env_str("EMAIL_HOST")
    EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
    EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD") or ""
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
    EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
    EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
    if EMAIL_USE_TLS and EMAIL_USE_SSL:
        raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL cannot both be on")
else:
    globals().update(env_email("EMAIL_URL", VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "controlplane@localhost")
ONCALL_EMAILS = env_list("ONCALL_EMAILS", [])
# Alert e-mails: tries per message (temporary failures only), the first retry delay (doubling each time, at most an
# hour), and after how long a claim left by a process that died is taken over. See docs/alerts.md.
ALERT_MAX_ATTEMPTS = env_int("ALERT_MAX_ATTEMPTS", 5, minimum=3, maximum=50)
ALERT_RETRY_BASE_S = env_int("ALERT_RETRY_BASE_S", 60, minimum=1, maximum=3600)
ALERT_CLAIM_TIMEOUT_S = env_int("ALERT_CLAIM_TIMEOUT_S", 300, minimum=30)

# --- auth and security --------------------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Failed logins: locked out for AXES_COOLOFF_MINUTES after AXES_FAILURE_LIMIT tries per user and address.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_float("AXES_COOLOFF_MINUTES", 15, minimum=0) / 60
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

SECURE_HTTPS = env_bool("SECURE_HTTPS", False)
SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
SECURE_SSL_REDIRECT = SECURE_HTTPS
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if SECURE_HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HTTPS
SECURE_HSTS_PRELOAD = SECURE_HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", False) else None
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600, minimum=60)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# Request bodies above this are refused with 413 (JSON for the API).
MAX_REQUEST_BYTES = env_int("MAX_REQUEST_BYTES", 1_048_576, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES

# --- REST API -----------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["controlplane.api.permissions.RolePermission"],
    "DEFAULT_FILTER_BACKENDS": [
        "controlplane.api.filters.FilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "controlplane.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "controlplane.api.errors.exception_handler",
    # no ?format= override: model versions are filtered by a field named format
    "URL_FORMAT_OVERRIDE": None,
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "LLM control plane API",
    "DESCRIPTION": "Registry, inventory, deployments, rollouts, monitoring and alerts for self-hosted MoE models.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["controlplane.api.permissions.RolePermission"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "controlplane.api.schema.postprocess",
    ],
    "ENUM_NAME_OVERRIDES": {
        "ModelStatusEnum": "controlplane.choices.ModelStatus",
        "UserRoleEnum": "controlplane.choices.Role",
        "NodeRoleEnum": "controlplane.choices.NodeRole",
        "NodeStatusEnum": "controlplane.choices.NodeStatus",
        "DeploymentStatusEnum": "controlplane.choices.DeploymentStatus",
        "AlertKindEnum": "controlplane.choices.AlertKind",
        "WorkerEventKindEnum": "controlplane.choices.WorkerEventKind",
        "DriftKindEnum": "controlplane.choices.DriftKind",
    },
}

# --- static files -------------------------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Unset: static files are served from static/ and the installed packages; set it after `collectstatic`.
STATIC_ROOT = env_str("STATIC_ROOT")

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

# --- the models, the worker and the node --------------------------------------------------------------------------
# Artifact paths given to the registry must lie inside one of these directories.
MODEL_DIRS = [
    Path(p).resolve() for p in env_list("MODEL_DIRS", [str(BASE_DIR / "inference" / "demo"), str(VAR_DIR / "models")])
]
# Bytes reserved for the runtime (CUDA context, allocator slack) in the fit check, per GPU and per CPU worker.
FIT_GPU_RUNTIME_BYTES = env_int("FIT_GPU_RUNTIME_BYTES", 768 * 2**20, minimum=0)
FIT_CPU_RUNTIME_BYTES = env_int("FIT_CPU_RUNTIME_BYTES", 512 * 2**20, minimum=0)
NODE_NAME = env_str("NODE_NAME")  # defaults to the host name

# --- the supervisor of this node's workers ------------------------------------------------------------------------
SUPERVISOR_ENABLED = env_bool("SUPERVISOR_ENABLED", True)
WORKER_START_TIMEOUT_S = env_float("WORKER_START_TIMEOUT_S", 300, minimum=5)
WORKER_HEALTH_INTERVAL_S = env_float("WORKER_HEALTH_INTERVAL_S", 2, minimum=0.1)
WORKER_HEALTH_FAILURES = env_int("WORKER_HEALTH_FAILURES", 3, minimum=1)
WORKER_BACKOFF_BASE_S = env_float("WORKER_BACKOFF_BASE_S", 1, minimum=0)
WORKER_BACKOFF_MAX_S = env_float("WORKER_BACKOFF_MAX_S", 60, minimum=0)
WORKER_BACKOFF_RESET_S = env_float("WORKER_BACKOFF_RESET_S", 120, minimum=0)
# --- drift checks (docs/drift.md) ---------------------------------------------------------------------------------
DRIFT_CHECK_INTERVAL_S = env_int("DRIFT_CHECK_INTERVAL_S", 900, minimum=60)
# Latency and output-distribution checks compare the recent window with the reference window just before it.
DRIFT_RECENT_WINDOW_S = env_int("DRIFT_RECENT_WINDOW_S", 900, minimum=60)
DRIFT_REFERENCE_WINDOW_S = env_int("DRIFT_REFERENCE_WINDOW_S", 6 * 3600, minimum=300)
DRIFT_MIN_GOLDEN_ITEMS = env_int("DRIFT_MIN_GOLDEN_ITEMS", 10, minimum=1)
# Compute threads of a CPU worker; 0: all cores but one when the control plane shares the node, else all.
WORKER_CPU_THREADS = env_int("WORKER_CPU_THREADS", 0, minimum=0, maximum=1024)
# After a canary is promoted, the replaced worker keeps serving requests already routed to it this long.
WORKER_RETIRE_GRACE_S = env_float("WORKER_RETIRE_GRACE_S", 5, minimum=0)
# Start workers with fault injection (POST /control/faults: leak memory, slow steps, fail requests; docs/faults.md).
# For tests and benchmarks only: never in production.
WORKER_FAULT_INJECTION = env_bool("WORKER_FAULT_INJECTION", False)
# --- live metrics (docs/monitoring.md) -------------------------------------------------------------------------------
# The collector in `serve`: GPUs (NVML), the host and every local worker, each METRICS_INTERVAL_S.
METRICS_ENABLED = env_bool("METRICS_ENABLED", True)
METRICS_INTERVAL_S = env_float("METRICS_INTERVAL_S", 1.0, minimum=0.05, maximum=3600)
# Raw samples kept in memory for live views and fine-grained history; older data comes from one-minute rollups.
METRICS_LIVE_WINDOW_S = env_int("METRICS_LIVE_WINDOW_S", 3600, minimum=60, maximum=86400)
# One-minute rollups (min/mean/max) older than this are pruned by the prune_metrics job.
METRICS_RETENTION_DAYS = env_int("METRICS_RETENTION_DAYS", 30, minimum=1)
# Messages waiting for one slow browser; past it the oldest are dropped (the collector never waits for a client).
METRICS_CLIENT_BUFFER = env_int("METRICS_CLIENT_BUFFER", 32, minimum=1, maximum=10000)
# A shared secret Prometheus may send as its bearer token for /metrics (API tokens and sign-ins work as well).
METRICS_TOKEN = env_secret("METRICS_TOKEN")
# NVML inventory discovery (GPUs registered on the local node) runs this often.
METRICS_DISCOVERY_INTERVAL_S = env_float("METRICS_DISCOVERY_INTERVAL_S", 300, minimum=1)
# Leak detector parameters as JSON of LeakConfig fields (controlplane/stats/leak.py), e.g. '{"windows_s": [60]}' for
# tests and benchmarks; empty: the calibrated defaults (docs/statistics.md).
METRICS_LEAK_CONFIG = env_str("METRICS_LEAK_CONFIG", "")
# --- the /v1 gateway -----------------------------------------------------------------------------------------------
GATEWAY_TOKEN_CACHE_S = env_float("GATEWAY_TOKEN_CACHE_S", 5, minimum=0, maximum=300)
GATEWAY_ROUTE_CACHE_S = env_float("GATEWAY_ROUTE_CACHE_S", 1, minimum=0, maximum=60)
GATEWAY_RETRY_AFTER_S = env_int("GATEWAY_RETRY_AFTER_S", 5, minimum=1)
# A request for a deployment whose worker is (re)starting waits this long for it before a 503 (0: refuse at once).
GATEWAY_WORKER_WAIT_S = env_float("GATEWAY_WORKER_WAIT_S", 30, minimum=0, maximum=600)
GATEWAY_RECORD_BUFFER = env_int("GATEWAY_RECORD_BUFFER", 100_000, minimum=1000)
# On first start with no deployments, register the bundled demo model and deploy it so the gateway answers at once.
DEMO_BOOTSTRAP = env_bool("DEMO_BOOTSTRAP", True)
# --- scheduler (docs/scheduler.md) -----------------------------------------------------------------------------------
# Run the scheduler inside `serve`. Default: on in the embedded mode (the in-memory channel layer reaches browsers only
# from the ASGI process), off when REDIS_URL is set (scale-out runs one `manage.py runscheduler` beside the servers).
SCHEDULER_IN_PROCESS = env_bool("SCHEDULER_IN_PROCESS", not REDIS_URL)
# The lock: a scheduler leads for SCHEDULER_LEASE_S after each renewal and renews every SCHEDULER_RENEW_S; a standby
# takes over once the leader's lease has expired.
SCHEDULER_LEASE_S = env_float("SCHEDULER_LEASE_S", 30, minimum=1, maximum=3600)
SCHEDULER_RENEW_S = env_float("SCHEDULER_RENEW_S", 5, minimum=0.1, maximum=600)
if SCHEDULER_RENEW_S * 2 > SCHEDULER_LEASE_S:
    raise ImproperlyConfigured(
        f"SCHEDULER_RENEW_S={SCHEDULER_RENEW_S} must be at most half of SCHEDULER_LEASE_S={SCHEDULER_LEASE_S}"
    )
# The dashboard, /readyz and an alert say that jobs stopped when the scheduler has not renewed its lock, or the
# heartbeat job (every minute) has not run, for this long.
SCHEDULER_STALE_AFTER_S = env_float("SCHEDULER_STALE_AFTER_S", 180, minimum=5)
SCHEDULER_THREADS = env_int("SCHEDULER_THREADS", 4, minimum=1, maximum=64)
# On SIGTERM, running jobs get this long to finish before they are recorded as interrupted.
SCHEDULER_SHUTDOWN_WAIT_S = env_float("SCHEDULER_SHUTDOWN_WAIT_S", 20, minimum=0)
# Job runs older than this are pruned (each job's last run is kept).
JOB_RUN_RETENTION_DAYS = env_int("JOB_RUN_RETENTION_DAYS", 14, minimum=1)

# --- logging ------------------------------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(f"LOG_LEVEL={LOG_LEVEL!r} must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        "axes": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        "apscheduler": {"level": "WARNING"},
    },
}

if TESTING:
    # Hashing is deliberately slow in production; tests create many users.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
