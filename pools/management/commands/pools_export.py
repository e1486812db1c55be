import json
from typing import Any

from django.core.management.base import BaseCommand

from pools.config import export_pools


class Command(BaseCommand):
    help = "Print the pool configuration as JSON (the format pools_import reads)."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(json.dumps(export_pools(), indent=2))
