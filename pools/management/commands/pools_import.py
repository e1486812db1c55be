import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from pools.config import PoolFileError, import_pools, parse_pool_file


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
            count = import_pools(parse_pool_file(text))
        except PoolFileError as error:
            raise CommandError(f"{path}: {error}; nothing was changed") from None
        self.stdout.write(f"imported {count} pool(s); live nodes re-pooled")
