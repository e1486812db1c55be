from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants import tickets
from tenants.models import Tenant
from tenants.services import key_ticket, tenant_signing_key


class Command(BaseCommand):
    help = "Mint an access ticket for a tenant (signed with its newest live key); prints it as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant")
        parser.add_argument("--ttl", type=int, default=tickets.DEFAULT_TTL_S, help="seconds (at most 86400)")
        parser.add_argument("--sub", default=None, help="the end user, kept in job stories")
        parser.add_argument("--pair", action="append", dest="pairs", help='a "src-tgt" the session may use (repeat)')

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(name=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no tenant named {options['tenant']!r}")
        key = tenant_signing_key(tenant)
        if key is None:
            raise CommandError(f"tenant {tenant.name!r} has no live key: manage.py tenant_key create {tenant.name}")
        if not 1 <= options["ttl"] <= tickets.MAX_TTL_S:
            raise CommandError(f"--ttl must be between 1 and {tickets.MAX_TTL_S}")
        ticket, expires_at = key_ticket(key=key, ttl_s=options["ttl"], sub=options["sub"], pairs=options["pairs"])
        self.stdout.write(f"ticket for tenant {tenant.name!r} (key {key.key_id}), expires at {expires_at}:")
        self.stdout.write(ticket)
