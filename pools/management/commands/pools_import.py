import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pools.config import PoolFileError, import_pools, parse_pool_file


def live_state_reachable() -> None:
    """The import republishes live state as it commits: refuse while Redis cannot take it."""
    from django.core.cache import cache

    try:
        cache.get("pools_import_probe")
    except Exception as error:
        raise PoolFileError(f"Redis (live state) is unreachable ({type(error).__name__})") from None


class Command(BaseCommand):
    help = "Replace the whole pool configuration with a JSON file's (refused whole if bad)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="pool file, or - for standard input")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text()
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from None
        try:
            data = parse_pool_file(text)
            live_state_reachable()
            count = import_pools(data)
        except PoolFileError as error:
            raise CommandError(f"{path}: {error}; nothing was changed") from None
        self.stdout.write(f"imported {count} pool(s); live nodes re-pooled")
