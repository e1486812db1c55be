"""The one settings module: every value comes from the environment through a typed reader.

The README's settings table lists each variable with its default; keep the two in step.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("SCHEDULER_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    """The variable's value; unset or empty gives the default."""
    return os.environ.get(name) or default


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {raw!r}") from None


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1/0/true/false, not {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _local_secret_key() -> str:
    """A local run keeps a generated key under var/ so sessions survive restarts."""
    path = VAR_DIR / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(50)
        path.write_text(key)
        path.chmod(0o600)
        return key


SECRET_KEY = env_str("SECRET_KEY") or _local_secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "::1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Origins allowed to open /ws/session (browsers); "*" lets any origin in.
ALLOWED_ORIGINS = env_list("ALLOWED_ORIGINS", ["*"])
PORT = env_int("PORT", 5010)
WORKERS = env_int("WORKERS", 1)

# --- Redis: our live state, the channel layer and Django's cache share one server. ---
EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis" / "redis.sock"
REDIS_URL = env_str("REDIS_URL") or f"unix://{quote(str(EMBEDDED_REDIS_SOCKET))}"
REDIS_SENTINELS: list[tuple[str, int]] = [
    (host, int(port))
    for host, _, port in (item.rpartition(":") for item in env_list("REDIS_SENTINELS", []))
]
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "mymaster")
# With Sentinel: the password of the Redis servers it hands out (with REDIS_URL, put it in the
# URL), and the sentinels' own (their `requirepass`). Empty: none.
REDIS_PASSWORD = env_str("REDIS_PASSWORD")
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD")
# Connection options of the sentinels themselves, for every client that asks them.
REDIS_SENTINEL_KWARGS: dict[str, object] = {"socket_connect_timeout": 2, "socket_timeout": 5} | (
    {"password": REDIS_SENTINEL_PASSWORD} if REDIS_SENTINEL_PASSWORD else {}
)
# Live state's connections per process (docs/deployment.md, "Connection pools"): a call finding
# all of them busy waits up to REDIS_POOL_TIMEOUT_S for one, so a burst queues instead of failing.
REDIS_MAX_CONNECTIONS = env_int("REDIS_MAX_CONNECTIONS", 50)
REDIS_POOL_TIMEOUT_S = env_float("REDIS_POOL_TIMEOUT_S", 10)

# --- The scheduler's own settings (docs/protocol.md and the README name each one). ---
SCHEDULER_REDIS_PREFIX = env_str("SCHEDULER_REDIS_PREFIX", "sched")
SCHEDULER_NODE_AUTH = env_str("SCHEDULER_NODE_AUTH", "token")
if SCHEDULER_NODE_AUTH not in ("token", "open"):
    raise ValueError("SCHEDULER_NODE_AUTH must be 'token' or 'open'")
SCHEDULER_HEARTBEAT_INTERVAL_S = env_float("SCHEDULER_HEARTBEAT_INTERVAL_S", 15)
SCHEDULER_JOB_TIMEOUT_S = env_float("SCHEDULER_JOB_TIMEOUT_S", 60)
SCHEDULER_DISPATCH_WAIT_S = env_float("SCHEDULER_DISPATCH_WAIT_S", 10)
SCHEDULER_MAX_ATTEMPTS = env_int("SCHEDULER_MAX_ATTEMPTS", 3)
SCHEDULER_PAUSE_MS = env_int("SCHEDULER_PAUSE_MS", 3000)
SCHEDULER_MAX_UTTERANCE_MS = env_int("SCHEDULER_MAX_UTTERANCE_MS", 10000)
SCHEDULER_DEFAULT_NODE_SLOTS = env_int("SCHEDULER_DEFAULT_NODE_SLOTS", 4)
SCHEDULER_AUTO_PAIR_POOLS = env_bool("SCHEDULER_AUTO_PAIR_POOLS", True)
SCHEDULER_MAX_FRAME_BYTES = env_int("SCHEDULER_MAX_FRAME_BYTES", 1024 * 1024)
SCHEDULER_RATE_LIMIT_PER_S = env_float("SCHEDULER_RATE_LIMIT_PER_S", 50)
SCHEDULER_SESSION_MAX_INFLIGHT = env_int("SCHEDULER_SESSION_MAX_INFLIGHT", 8)
SCHEDULER_MODEL_BLOCK_S = env_float("SCHEDULER_MODEL_BLOCK_S", 60)
SCHEDULER_JOB_HISTORY_S = env_int("SCHEDULER_JOB_HISTORY_S", 900)
SCHEDULER_NODE_MAX_LANGUAGES = env_int("SCHEDULER_NODE_MAX_LANGUAGES", 32)
SCHEDULER_NODE_MAX_SERVICES = env_int("SCHEDULER_NODE_MAX_SERVICES", 32)
SCHEDULER_NODE_MAX_SLOTS = env_int("SCHEDULER_NODE_MAX_SLOTS", 64)
SCHEDULER_NODE_RATE_LIMIT_PER_S = env_float("SCHEDULER_NODE_RATE_LIMIT_PER_S", 1000)
SCHEDULER_ROOM_MAX_MEMBERS = env_int("SCHEDULER_ROOM_MAX_MEMBERS", 8)
SCHEDULER_ROOM_IDLE_S = env_float("SCHEDULER_ROOM_IDLE_S", 1800)
SCHEDULER_EJECT_AFTER = env_int("SCHEDULER_EJECT_AFTER", 3)  # 0: never eject
SCHEDULER_EJECT_BASE_S = env_float("SCHEDULER_EJECT_BASE_S", 30)
SCHEDULER_EJECT_MAX_S = env_float("SCHEDULER_EJECT_MAX_S", 300)
# open: every session belongs to the built-in tenant "public"; ticket: a session needs an access
# ticket and belongs to its tenant (docs/protocol.md, tenants).
SCHEDULER_SESSION_AUTH = env_str("SCHEDULER_SESSION_AUTH", "open")
if SCHEDULER_SESSION_AUTH not in ("open", "ticket"):
    raise ValueError("SCHEDULER_SESSION_AUTH must be 'open' or 'ticket'")

# --- Django ---
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "pools",
    "tenants",
    "dispatch",
    "nodes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "schedulerproj.static_files.StaticFilesMiddleware",  # WhiteNoise, asynchronous
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "schedulerproj.urls"
ASGI_APPLICATION = "schedulerproj.asgi.application"

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
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=60,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes share the file: wait for a writer instead of failing at once. The test
    # database is a file too, so the daphne processes of end-to-end tests can open it.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

if REDIS_SENTINELS:
    _cache_location = f"redis://{REDIS_SENTINEL_MASTER}/0"
    _cache_options: dict[str, object] = {
        "CLIENT_CLASS": "django_redis.client.SentinelClient",
        "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
        "SENTINELS": REDIS_SENTINELS,
        "SENTINEL_KWARGS": REDIS_SENTINEL_KWARGS,
        "SOCKET_CONNECT_TIMEOUT": 2,
        "SOCKET_TIMEOUT": 5,
    }
    if REDIS_PASSWORD:
        _cache_options["PASSWORD"] = REDIS_PASSWORD
else:
    _cache_location = REDIS_URL
    _cache_options = {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 5}
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": _cache_location,
        "KEY_PREFIX": f"{SCHEDULER_REDIS_PREFIX}:cache",
        "OPTIONS": _cache_options,
    }
}

# Pub/sub layer, local first (dispatch/layers.py): frames go straight to the listening process
# (at-most-once; the job deadlines of dispatch recover what it drops). socket_timeout above redis-py 8's 5 s default.
# It may have a Redis of its own (docs/deployment.md, "Past one Redis"): a URL, or with Sentinel
# the name of a second primary the same sentinels watch. Empty: the live state's Redis.
CHANNEL_LAYER_REDIS_URL = env_str("CHANNEL_LAYER_REDIS_URL")
CHANNEL_LAYER_SENTINEL_MASTER = env_str("CHANNEL_LAYER_SENTINEL_MASTER")
if REDIS_SENTINELS and not CHANNEL_LAYER_REDIS_URL:
    _layer_host: dict[str, object] = {
        "sentinels": REDIS_SENTINELS,
        "master_name": CHANNEL_LAYER_SENTINEL_MASTER or REDIS_SENTINEL_MASTER,
        "sentinel_kwargs": REDIS_SENTINEL_KWARGS,
        "socket_connect_timeout": 2,
        "socket_timeout": 30,
    }
    if REDIS_PASSWORD:
        _layer_host["password"] = REDIS_PASSWORD
else:
    _layer_host = {"address": CHANNEL_LAYER_REDIS_URL or REDIS_URL, "socket_timeout": 30}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": env_str("CHANNEL_LAYER_BACKEND", "dispatch.layers.LocalFirstPubSubChannelLayer"),
        "CONFIG": {"hosts": [_layer_host], "prefix": f"{SCHEDULER_REDIS_PREFIX}:layer"},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve app static files (the dashboard's) straight from the apps too, so a process works
# before or without collectstatic (tests, a fresh checkout).
WHITENOISE_USE_FINDERS = True
LOGIN_URL = "/admin/login/"

# --- Logging: structured, one line per event; JSON with LOG_FORMAT=json. ---
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "text")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {"()": "schedulerproj.logs.StructuredFormatter", "json": LOG_FORMAT == "json"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}
