from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dispatch.nodes import UnknownNode, node_drain


class Command(BaseCommand):
    help = "Drain a node (no new jobs; its running jobs finish) or, with --resume, end the drain."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("node_id")
        parser.add_argument("--resume", action="store_true", help="end the drain")
        parser.add_argument("--reason", default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        node_id = options["node_id"]
        try:
            status = async_to_sync(node_drain)(
                node_id=node_id, drain=not options["resume"], reason=options["reason"]
            )
        except UnknownNode:
            raise CommandError(f"no node {node_id} in live state") from None
        self.stdout.write(f"{node_id}: {status}")
