from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.models import Tenant, TenantKey
from tenants.services import tenant_key_create, tenant_key_revoke


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


class Command(BaseCommand):
    help = "Create, list and revoke the keys that sign a tenant's access tickets."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a key; prints <key_id>:<secret> once, as the last line")
        create.add_argument("tenant")
        create.add_argument("--label", default="")
        sub.add_parser("list", help="one line per key: key id, tenant, created, last used, revoked")
        sub.add_parser("revoke", help="revoke a key and close the sessions its tickets opened").add_argument("key_id")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            tenant = Tenant.objects.filter(name=options["tenant"]).first()
            if tenant is None:
                raise CommandError(f"no tenant named {options['tenant']!r}")
            key, secret = tenant_key_create(tenant=tenant, label=options["label"])
            self.stdout.write(f"created key {key.key_id} for tenant {tenant.name!r}; its secret is shown only now:")
            self.stdout.write(f"{key.key_id}:{secret}")
        elif action == "list":
            for key in TenantKey.objects.select_related("tenant"):
                self.stdout.write(
                    f"{key.key_id}\t{key.tenant.name}\tcreated {_when(key.created_at)}"
                    f"\tlast used {_when(key.last_used_at)}\trevoked {_when(key.revoked_at)}"
                )
        else:
            found = TenantKey.objects.filter(key_id=options["key_id"]).first()
            if found is None:
                raise CommandError(f"no key {options['key_id']!r}")
            tenant_key_revoke(key=found)
            self.stdout.write(f"revoked {found.key_id}")
