"""Settings for the GPU PaaS portal, read from environment variables.

Every variable is listed in the README's configuration reference. Defaults give the embedded
set-up (SQLite, local infrastructure driver, django-q2 ORM broker) so a fresh checkout runs.
"""

import contextlib
import os
import secrets
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet

from portal import logs
from portal.env import (
    ConfigurationError,
    env_bool,
    env_choice,
    env_int,
    env_list,
    env_networks,
    env_str,
    env_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(env_str("PORTAL_DATA_DIR", str(BASE_DIR / "var")))
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _key_from_file(name: str, generate) -> str:
    """Return the key stored in DATA_DIR/name, creating it on first run.

    The web server and the workers may start together on a fresh data directory (bin/run
    starts them at once): each may generate a key, but only one is ever published, and no
    process reads a file another is still writing."""
    path = DATA_DIR / name
    if not path.exists():
        _publish_unless_present(path, generate())
    return path.read_text().strip()


def _publish_unless_present(path: Path, content: str) -> None:
    """Make `path` hold `content` (mode 0600) unless it exists, atomically: the content is
    written whole to a temporary file of the same directory, then hard-linked to `path`,
    which fails if another process linked its own first; that one's content stands."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())  # never a published but empty key after a crash
        with contextlib.suppress(FileExistsError):  # another process published first
            os.link(temporary, path)
    finally:
        temporary.unlink()


def _new_fernet_key() -> str:
    return Fernet.generate_key().decode()


DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")
SITE_NAME = env_str("SITE_NAME", "GPU PaaS")

# Secure cookies whenever the portal is served over HTTPS (behind a proxy that sets
# X-Forwarded-Proto, as most deployments are).
SECURE_COOKIES = env_bool("SECURE_COOKIES", SITE_URL.startswith("https://"))
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
if SECURE_COOKIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600, minimum=60)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# HSTS on HTTPS responses once the site is HTTPS (a year by default; 0 sends none).
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if SECURE_COOKIES else 0, minimum=0)
# Reverse proxies in front of the portal that append to X-Forwarded-For; the per-IP login
# throttle counts the address that many entries from the right (portal.middleware.client_ip).
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0, minimum=0)
# Content-Security-Policy (django-csp): scripts and stylesheets only from the portal itself,
# no inline script. Style attributes stay allowed (the MIG slice drawings size their grids
# with them); browsers without style-src-attr fall back to style-src. No form-action: the
# "Log in with Okta" form redirects to the identity provider, which form-action would block.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "style-src-elem": ["'self'"],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

INSTALLED_APPS = [
    # Before django.contrib.auth, so its `createsuperuser` (unique ignoring case) is the one.
    "portal",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "django_q",
    "django_tables2",
    "django_filters",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "profiles",
    "pools",
    "services",
    "workspaces",
    "usage",
    "api",
]

MIDDLEWARE = [
    "portal.metrics.RequestMetricsMiddleware",
    "portal.middleware.OperationsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "portal.middleware.RequestIdMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "portal.context_processors.portal",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'portal.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0, minimum=0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the django-q2 worker share the file: wait for each other's
    # write locks instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
else:
    # A probe or a request must not hang on a database host that does not answer.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
        "connect_timeout", env_int("DATABASE_CONNECT_TIMEOUT", 5, minimum=1)
    )

# Keys. Several processes (web replicas, workers) share a server database: were each to
# generate its own keys, one replica could not read another's sessions or the secrets it
# encrypted. So with a server database and DEBUG off the keys must come from the
# environment, and the process refuses to start without them. With SQLite (one host) or in
# DEBUG they are generated once into DATA_DIR.
SHARED_DATABASE = DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3"
if SHARED_DATABASE and not DEBUG:
    _missing = [name for name in ("SECRET_KEY", "PORTAL_ENCRYPTION_KEYS") if not env_str(name)]
    if _missing:
        raise ConfigurationError(
            f"{' and '.join(_missing)} must be set: with DEBUG off and a "
            f"{DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} database every process "
            "must use the same keys, so they are never generated (see the README's "
            "configuration reference)"
        )
SECRET_KEY = env_str("SECRET_KEY") or _key_from_file(
    "secret_key", lambda: secrets.token_urlsafe(50)
)
# Fernet keys for secrets at rest (credentials, SSH keys, kubeconfigs). Comma-separated: the
# first encrypts, all decrypt, so a key can be rotated without losing stored secrets.
ENCRYPTION_KEYS = env_list("PORTAL_ENCRYPTION_KEYS", []) or [
    _key_from_file("encryption_key", _new_fernet_key)
]
for _key in ENCRYPTION_KEYS:
    try:
        Fernet(_key.encode())
    except ValueError:
        raise ConfigurationError(
            "PORTAL_ENCRYPTION_KEYS: each key must be a Fernet key (32 url-safe base64-encoded "
            "bytes), e.g. from `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`"
        ) from None

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Argon2id at a cost chosen for a login under 300 ms (portal.hashers); the others verify
# hashes stored before and are replaced on the next login.
PASSWORD_HASHERS = [
    "portal.hashers.PortalArgon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_ADAPTER = "portal.accounts.PortalAccountAdapter"
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_SESSION_REMEMBER = False
# Brute-force throttling of the password form (allauth's rate limits).
ACCOUNT_RATE_LIMITS = {"login_failed": "10/m/ip,5/5m/key"}
SOCIALACCOUNT_ADAPTER = "portal.accounts.PortalSocialAccountAdapter"
# Okta SSO: the app is built from the SsoConfiguration row (admin page), not from settings.
# A first SSO login creates the account without a form (the adapter only lets users in whose
# groups map); an Okta login whose verified email matches a local account signs into that
# account and links it. SSO users may lack an email claim.
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_REQUIRED = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_REQUESTS_TIMEOUT = 10
# Invitation links stay valid this many days.
PORTAL_INVITATION_DAYS = env_int("PORTAL_INVITATION_DAYS", 7, minimum=1)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("PORTAL_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("PORTAL_STATIC_ROOT", str(DATA_DIR / "staticfiles")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Serve straight from the finders so the portal works without a collectstatic step.
WHITENOISE_USE_FINDERS = True

# Mail: SMTP when EMAIL_HOST names a server, else the console. An invitation's link is a
# bearer secret that must reach the invitee, never a log, so with DEBUG off and a server
# database (production, as for the keys above) one of the two must be set.
EMAIL_BACKEND = env_str("EMAIL_BACKEND") or (
    "django.core.mail.backends.smtp.EmailBackend" if env_str("EMAIL_HOST") else ""
)
if not EMAIL_BACKEND:
    if SHARED_DATABASE and not DEBUG:
        raise ConfigurationError(
            "EMAIL_HOST (an SMTP server) or EMAIL_BACKEND must be set: with DEBUG off and a "
            f"{DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} database, invitation "
            "links are mailed, never written to the log (see the README's configuration reference)"
        )
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# Seconds an SMTP connection may wait: mail goes out from worker tasks, and a server that
# accepts the connection but never answers would hold the worker until the task's timeout.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "gpu-paas@localhost")

# django-q2 with the ORM broker: works on SQLite and PostgreSQL with nothing else to run.
# `timeout` stays below `retry` so a task is never handed to a second worker while the first
# is still allowed to run it.
Q_TASK_TIMEOUT = env_int("Q_TASK_TIMEOUT", 600, minimum=10)
Q_CLUSTER = {
    "name": "portal",
    "orm": "default",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": Q_TASK_TIMEOUT,
    "retry": Q_TASK_TIMEOUT + 60,
    "max_attempts": env_int("Q_MAX_ATTEMPTS", 5, minimum=1),
    "catch_up": False,
    "poll": 1,
    "save_limit": 1000,
    "ack_failures": True,
}
# Warm-pool refills on a queue of their own, served by `Q_CLUSTER_NAME=pools manage.py
# qcluster`, so they never delay users' requests. Empty: one shared queue, where the
# control loop holds back while user requests wait for a worker.
WARM_POOL_CLUSTER = env_str("WARM_POOL_CLUSTER")
if WARM_POOL_CLUSTER:
    Q_CLUSTER["ALT_CLUSTERS"] = {WARM_POOL_CLUSTER: {"workers": 1}}
# Redis as the broker, for scale: `Q_BROKER_URL=redis://host:6379/0`. Task results and
# schedules stay in the database. Redis hands a task out once and does not take it back
# when a worker dies mid-task; the sweep (pools.tasks.sweep) resumes such work.
REDIS_SCHEMES = ("redis", "rediss", "unix")
Q_BROKER_URL = env_url(
    "Q_BROKER_URL",
    "",
    REDIS_SCHEMES,
    "only Redis is supported (redis://host:6379/0); leave it empty for the database (ORM) broker",
)
if Q_BROKER_URL:
    del Q_CLUSTER["orm"]
    Q_CLUSTER["redis"] = Q_BROKER_URL

# Django's cache counts the login throttle, the API rate limit and the SSO failure audit's
# repeats. Each process keeps its own unless CACHE_URL names a Redis that all of them
# share: then a client spreading bad passwords over web workers and replicas still meets
# one count. The broker's Redis serves unless another is named.
CACHE_URL = env_url(
    "CACHE_URL",
    Q_BROKER_URL,
    REDIS_SCHEMES,
    "only Redis is supported (redis://host:6379/1); leave it empty to count in each process",
)
if CACHE_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": CACHE_URL,
            "KEY_PREFIX": "portal",
        }
    }

# Operations: probes and metrics (portal.health, portal.metrics, pools.metrics).
# /readyz wants a django-q2 heartbeat task finished within this many seconds.
READYZ_HEARTBEAT_MAX_AGE = env_int("READYZ_HEARTBEAT_MAX_AGE", 180, minimum=60)
# /metrics answers a bearer token or the listed addresses; neither set: it answers 404.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = env_networks("METRICS_ALLOWED_IPS", [])

# Infrastructure drivers
# Where the local driver makes workspace directories.
WORKSPACES_ROOT = Path(env_str("PORTAL_WORKSPACES_ROOT", str(DATA_DIR / "workspaces")))
# How local workspaces are isolated (README: security model): "auto" where the host can
# (bubblewrap; a uid per workspace when the portal runs as root), "off" never.
LOCAL_WORKSPACE_ISOLATION = env_choice("LOCAL_WORKSPACE_ISOLATION", "auto", {"auto", "off"})
# Their network: "own" (where the host can, a namespace per workspace with nothing in it but
# its loopback: no portal, database or other workspace; the internet only as EGRESS says), "host"
# (the host's network, for workspaces that must download; they then reach what it reaches).
LOCAL_WORKSPACE_NETWORK = env_choice("LOCAL_WORKSPACE_NETWORK", "own", {"own", "host"})
# The way out of an own network: "https" (a proxy per workspace to port 443 of public
# addresses, README: security model) or "off" (none). EGRESS_ALLOW lists exceptions an
# administrator trusts, e.g. an internal package mirror: NAME:PORT, ADDRESS:PORT, NETWORK:PORT.
LOCAL_WORKSPACE_EGRESS = env_choice("LOCAL_WORKSPACE_EGRESS", "https", {"https", "off"})
LOCAL_WORKSPACE_EGRESS_ALLOW = env_list("LOCAL_WORKSPACE_EGRESS_ALLOW", [])
# Where local workspaces' HTTPS proxies connect from (pools/relay.py): an IPv4 address of this
# host, an IPv6 one, or one of each, which the platform routes through an egress gateway of its
# own, so the outside tells workspaces from the portal. Empty: from the host's own address. One
# the host does not have closes the proxy, and the local infrastructure's status says why.
LOCAL_WORKSPACE_EGRESS_SOURCE = env_list("LOCAL_WORKSPACE_EGRESS_SOURCE", [])
# cuda: a local workspace with GPUs is ready only once CUDA, run as its processes run, sees
# exactly its GPUs (pools.gpucheck); off: NVML's word is taken for it.
LOCAL_GPU_CHECK = env_choice("LOCAL_GPU_CHECK", "cuda", {"cuda", "off"})
# Their CPUs and memory: "auto" holds each workspace to its profile's where the host can
# (a control group per workspace; README: security model), "off" lets them share the host's.
LOCAL_WORKSPACE_LIMITS = env_choice("LOCAL_WORKSPACE_LIMITS", "auto", {"auto", "off"})
LOCAL_WORKSPACE_UID_MIN = env_int("LOCAL_WORKSPACE_UID_MIN", 70000, minimum=1000)
LOCAL_WORKSPACE_UID_MAX = env_int(
    "LOCAL_WORKSPACE_UID_MAX", LOCAL_WORKSPACE_UID_MIN + 9999, minimum=LOCAL_WORKSPACE_UID_MIN
)
if LOCAL_WORKSPACE_UID_MAX >= 2**31 - 1:
    raise ConfigurationError(f"LOCAL_WORKSPACE_UID_MAX={LOCAL_WORKSPACE_UID_MAX} is too large")
# An alternative AWS endpoint (e.g. a moto server in tests); empty means AWS itself.
AWS_ENDPOINT_URL = env_str("AWS_ENDPOINT_URL") or None
# "namespace": one namespace per workspace; "shared": labelled objects in one namespace.
KUBERNETES_NAMESPACE_MODE = env_choice(
    "KUBERNETES_NAMESPACE_MODE", "namespace", {"namespace", "shared"}
)
KUBERNETES_SHARED_NAMESPACE = env_str("KUBERNETES_SHARED_NAMESPACE", "gpu-workspaces")
KUBERNETES_WORKSPACE_IMAGE = env_str(
    "KUBERNETES_WORKSPACE_IMAGE", "nvcr.io/nvidia/cuda:12.6.3-base-ubuntu24.04"
)
# Empty: the cluster's default StorageClass.
KUBERNETES_STORAGE_CLASS = env_str("KUBERNETES_STORAGE_CLASS")
# What a Kubernetes workspace reaches outside the cluster: port 443 of public addresses
# (as a local workspace), any port of them, or nothing (its NetworkPolicy).
KUBERNETES_WORKSPACE_EGRESS = env_choice(
    "KUBERNETES_WORKSPACE_EGRESS", "https", {"https", "public", "off"}
)

# The REST API (api/, issue 15): personal API tokens or the session (with CSRF), the roles'
# permissions plus the token's scope, errors as RFC 9457 problem details, a rate per token.
API_RATE = env_str("API_RATE", "600/minute")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "api.permissions.TokenScope",
        "api.permissions.AreaPermission",
    ],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "api.pagination.Pages",
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.PerTokenThrottle"],
    "DEFAULT_THROTTLE_RATES": {"api": API_RATE},
    "DEFAULT_SCHEMA_CLASS": "api.schema.PortalAutoSchema",
    "EXCEPTION_HANDLER": "api.problems.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GPU PaaS portal API",
    "DESCRIPTION": "Everything the portal's pages do, scriptable. Authenticate with a personal "
    "API token (`Authorization: Bearer gpp_…`, made on the API tokens page) or the session.",
    "VERSION": "1",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the portal's own static files (drf-spectacular-sidecar): no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"LifecycleStateEnum": "pools.lifecycle.State.choices"},
}

DJANGO_TABLES2_TEMPLATE = "django_tables2/table.html"
DJANGO_TABLES2_TABLE_ATTRS = {"class": "table"}

# "text": one readable line per record (the default); "json": one JSON object per line with
# the request id, user, workspace or pool instance id and task id (portal.logs).
LOG_FORMAT = env_choice("LOG_FORMAT", "text", {"text", "json"})
LOG_LEVEL = env_choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
LOGGING = logs.logging_config(LOG_FORMAT, LOG_LEVEL)
