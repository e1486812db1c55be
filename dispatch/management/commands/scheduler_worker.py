"""The background worker: job timeouts, lease expiry, reassignment (safe in several copies)."""

import asyncio
from typing import Any

from django.core.management.base import BaseCommand

from dispatch.config import pools_ensure_published
from dispatch.worker import worker_run


class Command(BaseCommand):
    help = "Run the scheduler's background worker until SIGTERM or Ctrl-C."

    def handle(self, *args: Any, **options: Any) -> None:
        pools_ensure_published()
        asyncio.run(worker_run())
