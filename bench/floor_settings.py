"""Settings of the floor server (``bench.floor_server``): the naive Channels build of one job.

A plain Django project with Channels and one channel layer, chosen by ``BENCH_LAYER``:
``default`` (channels_redis.core.RedisChannelLayer), ``pubsub`` (the layer we ship) or
``memory`` (channels.layers.InMemoryChannelLayer, valid inside one process only). The Redis
host options are the ones ``schedulerproj.settings`` gives the layer we ship.
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "bench-floor-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
ASGI_APPLICATION = "bench.floor_asgi.application"
USE_TZ = True
# A database is configured (never queried), as in any Django project: channels' per-handler
# close_old_connections then has real connections to look at, as it has in ours.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("BENCH_FLOOR_DB", str(BASE_DIR / "var" / "bench" / "floor.sqlite3")),
    }
}

REDIS_URL = os.environ["REDIS_URL"]
LAYER = os.environ.get("BENCH_LAYER", "pubsub")
_PREFIX = os.environ.get("BENCH_LAYER_PREFIX", "bench-floor") + ":layer"
_HOSTS = [{"address": REDIS_URL, "socket_timeout": 30}]
_BACKENDS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": _HOSTS, "prefix": _PREFIX},
    },
    "pubsub": {  # the layer we ship: channels-redis's pub/sub layer, local first
        "BACKEND": "dispatch.layers.LocalFirstPubSubChannelLayer",
        "CONFIG": {"hosts": _HOSTS, "prefix": _PREFIX},
    },
    "memory": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
}
CHANNEL_LAYERS = {"default": _BACKENDS[LAYER]}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING"},
}
