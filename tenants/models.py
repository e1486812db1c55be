"""Tenants (the customers who share the network), their keys, and what they used per UTC day.

A tenant's key signs the access tickets its backend mints (docs/protocol.md, tenants). HS256
needs the secret itself to verify a ticket, so the secret is stored encrypted under a key derived
from ``SECRET_KEY`` (``tenants.sealing``), never in plain text.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

PUBLIC = "public"  # the built-in tenant of every session in open mode
TENANT_NAME = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", "Letters, digits and _ . - (at most 63, starting with a letter or digit)."
)


class Tenant(models.Model):
    name = models.CharField(
        max_length=63, unique=True, validators=[TENANT_NAME], help_text="Cannot be changed once created."
    )
    enabled = models.BooleanField(
        default=True, help_text="Off: its tickets are refused and its open sessions closed (4401)."
    )
    max_sessions = models.PositiveIntegerField(
        null=True, blank=True, help_text="Open sessions at once; empty = unlimited."
    )
    audio_minutes_per_day = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0))],
        help_text="Audio placed on nodes per UTC day; empty = unlimited.",
    )
    allowed_origins = models.TextField(
        blank=True,
        help_text="Origins allowed to open its sessions, one per line or comma-separated "
        "(e.g. https://app.example.com); empty = the server's ALLOWED_ORIGINS.",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def origins(self) -> list[str]:
        return [item.strip().rstrip("/") for item in self.allowed_origins.replace(",", "\n").split() if item.strip()]


class TenantKey(models.Model):
    """A signing key: ``key_id`` names it in a ticket's ``kid`` header."""

    tenant = models.ForeignKey(Tenant, related_name="keys", on_delete=models.CASCADE)
    key_id = models.CharField(max_length=40, unique=True, editable=False)
    sealed_secret = models.TextField(editable=False)
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["tenant__name", "created_at"]
        verbose_name = "tenant key"

    def __str__(self) -> str:
        return self.key_id

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class TenantUsage(models.Model):
    """What one tenant used on one UTC day, rolled up from the live counters by the worker.

    Keyed by the tenant's name, not a foreign key: the record outlives a deleted tenant."""

    tenant = models.CharField(max_length=63, db_index=True)
    day = models.DateField()
    sessions = models.PositiveBigIntegerField(default=0, help_text="sessions opened")
    jobs = models.PositiveBigIntegerField(default=0, help_text="utterances that became jobs")
    results = models.PositiveBigIntegerField(default=0)
    missing = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(default=0)
    cancelled = models.PositiveBigIntegerField(default=0)
    audio_ms = models.PositiveBigIntegerField(default=0, help_text="audio placed on nodes, ms")
    audio_ms_result = models.PositiveBigIntegerField(default=0, help_text="audio of jobs that got a result, ms")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-day", "tenant"]
        constraints = [models.UniqueConstraint(fields=["tenant", "day"], name="tenant_usage_one_row_per_day")]
        verbose_name = "usage per day"
        verbose_name_plural = "usage per day"

    def __str__(self) -> str:
        return f"{self.tenant} {self.day}"
