"""``pools_import``: replace the whole pool configuration with a JSON file's, or, with
``--dry-run``, print what it would do to the live fleet and change nothing. It lives in
``dispatch`` because it reads live state (the dry run's impact) and republishes it."""

import getpass
import socket
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from dispatch.impact import impact, published_config
from pools.config import PoolFileError, file_config, file_sha256, import_pools, parse_pool_file, parse_pools
from pools.models import PoolImport


def live_state_reachable() -> None:
    """The import republishes live state as it commits: refuse while Redis cannot take it."""
    from django.core.cache import cache

    try:
        cache.get("pools_import_probe")
    except Exception as error:
        raise PoolFileError(f"Redis (live state) is unreachable ({type(error).__name__})") from None


def who_runs() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:150]


class Command(BaseCommand):
    help = (
        "Replace the whole pool configuration with a JSON file's (refused whole if bad); "
        "--dry-run prints what it would do to the live fleet and changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="pool file, or - for standard input")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="print the impact (nodes joining or leaving each pool, pairs losing their last pool, "
            "open sessions changing route) and change nothing",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["file"]
        try:
            raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from None
        try:
            data = parse_pool_file(raw.decode("utf-8", errors="replace"))
            live_state_reachable()
            if options["dry_run"]:
                before = published_config()
                found = impact(before, file_config(parse_pools(data), before))
                for line in found.lines():
                    self.stdout.write(line)
                self.stdout.write(f"dry run of {path}: nothing was changed")
                return
            record = PoolImport(by=who_runs(), file_name=path, file_sha256=file_sha256(raw))
            count = import_pools(data, record=record)
        except PoolFileError as error:
            raise CommandError(f"{path}: {error}; nothing was changed") from None
        self.stdout.write(f"imported {count} pool(s); live nodes re-pooled")
