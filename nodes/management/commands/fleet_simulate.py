"""``manage.py fleet_simulate``: simulated nodes and browsers (``fleetsim``) speaking the real
protocol over real sockets to a scheduler, ours on this machine by default."""

import json
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleetsim.fleet import NodeRefused, Unreachable, simulate
from fleetsim.options import OptionError, add_arguments, plan_from
from fleetsim.stats import summary_text

DEV_TOKEN_FILE = settings.VAR_DIR / "dev_node_token"


def _dev_token() -> str | None:
    try:
        return DEV_TOKEN_FILE.read_text().strip() or None
    except OSError:
        return None


class Command(BaseCommand):
    help = (
        "Simulated GPU nodes and browsers that speak the real protocol to a scheduler: a live line while it "
        "runs, a summary per language pair at the end."
    )
    requires_system_checks: list[str] = []  # a client: it needs neither the database nor the checks

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser, url=f"ws://127.0.0.1:{settings.PORT}",
                      token_hint=f"the development token of make run, {DEV_TOKEN_FILE}")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            plan = plan_from(options, token=_dev_token(), interactive=sys.stderr.isatty())
        except OptionError as error:
            raise CommandError(str(error), returncode=2) from None
        try:
            summary = simulate(plan, err=sys.stderr, interactive=sys.stderr.isatty())
        except Unreachable as error:
            raise CommandError(str(error), returncode=2) from None
        except NodeRefused as error:
            hint = ""
            if error.code == 4401:
                hint = f": the node token was refused; pass --token, or run make run once (it writes {DEV_TOKEN_FILE})"
            raise CommandError(f"{error}{hint}", returncode=2) from None
        to_stdout = options["json"] == "-"
        (sys.stderr if to_stdout else self.stdout).write(summary_text(summary) + "\n")
        if to_stdout:
            self.stdout.write(json.dumps(summary, indent=2))
        elif options["json"]:
            try:
                with open(options["json"], "w") as out:
                    json.dump(summary, out, indent=2)
            except OSError as error:
                raise CommandError(f"--json: cannot write {options['json']}: {error.strerror}") from None
