from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.models import Tenant
from tenants.services import tenant_create, tenant_update


def _quota(raw: str | None, kind: type) -> Any:
    """``""`` clears a quota (unlimited)."""
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except (ValueError, InvalidOperation):
        raise CommandError(f"{raw!r} is not a number") from None
    if value < 0:
        raise CommandError(f"{raw!r} is negative")
    return value


def _messages(error: ValidationError) -> str:
    return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())


class Command(BaseCommand):
    help = "Create, change, disable, enable and list tenants."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        for action, text in (("create", "create a tenant"), ("update", "change a tenant's quotas")):
            command = sub.add_parser(action, help=text)
            command.add_argument("name")
            command.add_argument("--max-sessions", help='open sessions at once ("" = unlimited)')
            command.add_argument("--audio-minutes-per-day", help='audio per UTC day ("" = unlimited)')
            command.add_argument("--origins", help="allowed origins, comma-separated (\"\" = ALLOWED_ORIGINS)")
        sub.add_parser("disable", help="refuse its tickets and close its open sessions").add_argument("name")
        sub.add_parser("enable", help="accept its tickets again").add_argument("name")
        sub.add_parser("list", help="one line per tenant: name, enabled, quotas")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "list":
            for tenant in Tenant.objects.all():
                self.stdout.write(
                    f"{tenant.name}\t{'enabled' if tenant.enabled else 'disabled'}"
                    f"\tmax_sessions {tenant.max_sessions if tenant.max_sessions is not None else '-'}"
                    f"\taudio_minutes_per_day {tenant.audio_minutes_per_day if tenant.audio_minutes_per_day is not None else '-'}"
                )
            return
        name = options["name"]
        fields: dict[str, Any] = {}
        if options.get("max_sessions") is not None:
            fields["max_sessions"] = _quota(options["max_sessions"], int)
        if options.get("audio_minutes_per_day") is not None:
            fields["audio_minutes_per_day"] = _quota(options["audio_minutes_per_day"], Decimal)
        if options.get("origins") is not None:
            fields["allowed_origins"] = options["origins"]
        try:
            if action == "create":
                if Tenant.objects.filter(name=name).exists():
                    raise CommandError(f"a tenant named {name!r} already exists")
                tenant_create(name=name, **fields)
                self.stdout.write(f"created tenant {name!r}")
                return
            found = Tenant.objects.filter(name=name).first()
            if found is None:
                raise CommandError(f"no tenant named {name!r}")
            if action in ("disable", "enable"):
                fields = {"enabled": action == "enable"}
            tenant_update(tenant=found, **fields)
        except ValidationError as error:
            raise CommandError(_messages(error)) from None
        self.stdout.write(f"{action}d tenant {name!r}" if action != "update" else f"updated tenant {name!r}")
