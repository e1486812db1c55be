from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dispatch.nodes import UnknownNode, node_eject_end


class Command(BaseCommand):
    help = "End a node's ejection after failures now: it takes jobs again at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("node_id")

    def handle(self, *args: Any, **options: Any) -> None:
        node_id = options["node_id"]
        try:
            ended = async_to_sync(node_eject_end)(node_id=node_id)
        except UnknownNode:
            raise CommandError(f"no node {node_id} in live state") from None
        self.stdout.write(f"{node_id}: ejection ended" if ended else f"{node_id}: was not ejected")
