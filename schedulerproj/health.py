"""``/healthz``: the process answers. ``/readyz``: the database and Redis answer too."""

from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, JsonResponse


async def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})  # on the loop: no thread for a probe


def readyz(request: HttpRequest) -> JsonResponse:
    from dispatch import store

    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as error:  # any failure means "not ready", and says which part
        checks["database"] = f"unavailable: {type(error).__name__}"
    try:
        store.sync_client().ping()
        checks["redis"] = "ok"
    except Exception as error:
        checks["redis"] = f"unavailable: {type(error).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", **checks}, status=200 if ready else 503)
