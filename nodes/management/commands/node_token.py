from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from nodes.models import NodeToken
from nodes.tokens import token_create, token_revoke
from tenants.models import Tenant


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


class Command(BaseCommand):
    help = "Create, list and revoke node tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a token; prints it as the last line")
        create.add_argument("name")
        create.add_argument("--tenant", help="its nodes serve only this tenant's sessions")
        sub.add_parser("list", help="one line per token: name, created, last used, revoked")
        sub.add_parser("revoke", help="revoke a token and close its live nodes").add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            tenant = None
            if options.get("tenant"):
                tenant = Tenant.objects.filter(name=options["tenant"]).first()
                if tenant is None:
                    raise CommandError(f"no tenant named {options['tenant']!r}")
            try:
                _, plaintext = token_create(name=options["name"], tenant=tenant)
            except IntegrityError:
                raise CommandError(f"a token named {options['name']!r} already exists") from None
            serves = f" (its nodes serve only tenant {tenant.name!r})" if tenant else ""
            self.stdout.write(f"created node token {options['name']!r}{serves}; it is shown only now:")
            self.stdout.write(plaintext)
        elif action == "list":
            for token in NodeToken.objects.select_related("tenant"):
                self.stdout.write(
                    f"{token.name}\tcreated {_when(token.created_at)}\tlast used {_when(token.last_used_at)}"
                    f"\trevoked {_when(token.revoked_at)}\ttenant {token.tenant.name if token.tenant else '-'}"
                )
        else:
            found = NodeToken.objects.filter(name=options["name"]).first()
            if found is None:
                raise CommandError(f"no token named {options['name']!r}")
            closed = token_revoke(token=found)
            self.stdout.write(f"revoked {found.name!r}; {closed} live node(s) closed")
