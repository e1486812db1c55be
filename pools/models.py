"""Configuration that admins edit: pools, their language rules, and per-node slot overrides."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models

from pools.validation import check_language_code, validate_language_code

SERVICE_TYPES = ("asr", "nmt", "tts", "tone", "semantic", "phonetic", "punctuation")
LANGUAGE_CODE = validate_language_code
POOL_NAME = RegexValidator(
    r"^(?!auto:)[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$",
    "Letters, digits and _ . : - (not starting with 'auto:', which automatic pools use).",
)


class Strategy(models.TextChoices):
    RANDOM = "random", "random: uniform among nodes with a free slot"
    STICKY = "sticky", "sticky: the session's previous node while it has a free slot"
    LEAST_LOADED = "least_loaded", "least_loaded: most free slots among a sample of 16"


TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def validate_tenants(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) and TENANT_NAME.match(item) for item in value):
        raise ValidationError("Tenants must be a list of tenant names.")


def validate_services(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Required services must be a list of service types.")
    unknown = sorted(set(value) - set(SERVICE_TYPES))
    if unknown:
        raise ValidationError(
            f"Unknown service type(s): {', '.join(unknown)}. Known: {', '.join(SERVICE_TYPES)}."
        )


class Pool(models.Model):
    name = models.CharField(max_length=80, unique=True, validators=[POOL_NAME])
    enabled = models.BooleanField(default=True)
    priority = models.IntegerField(default=10, help_text="Higher priorities are tried first.")
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.RANDOM)
    required_services = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_services],
        help_text='Service types a node must have ready, e.g. ["asr", "nmt", "tts"].',
    )
    tenants = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_tenants],
        help_text='Only these tenants\' sessions may use the pool, e.g. ["acme"]; empty = everyone.',
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-priority", "name"]

    def __str__(self) -> str:
        return self.name

    def pairs(self) -> set[tuple[str, str]]:
        """Every directed pair the pool's rules name."""
        found: set[tuple[str, str]] = set()
        for rule in self.rules.all():
            found |= rule.pairs()
        return found


class LanguageRule(models.Model):
    """Either one directed pair (source → target) or a set of languages (all ordered pairs)."""

    pool = models.ForeignKey(Pool, related_name="rules", on_delete=models.CASCADE)
    src_lang = models.CharField(
        "source", max_length=16, blank=True, validators=[LANGUAGE_CODE]
    )
    tgt_lang = models.CharField(
        "target", max_length=16, blank=True, validators=[LANGUAGE_CODE]
    )
    languages = models.CharField(
        max_length=400,
        blank=True,
        help_text="Instead of a pair: comma-separated languages, expanded to all ordered pairs.",
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        if self.languages:
            return f"{{{self.languages}}}"
        return f"{self.src_lang} → {self.tgt_lang}"

    def language_set(self) -> list[str]:
        return [code.strip() for code in self.languages.split(",") if code.strip()]

    def pairs(self) -> set[tuple[str, str]]:
        if self.languages:
            codes = self.language_set()
            return {(s, t) for s in codes for t in codes if s != t}
        return {(self.src_lang, self.tgt_lang)}

    def clean(self) -> None:
        if self.languages:
            if self.src_lang or self.tgt_lang:
                raise ValidationError("Give either a source and a target, or a language set.")
            codes = self.language_set()
            for code in codes:
                check_language_code(code, "Languages")
            if len(set(codes)) < 2:
                raise ValidationError("A language set needs at least two different languages.")
        else:
            if not (self.src_lang and self.tgt_lang):
                raise ValidationError("Give a source and a target language (or a language set).")
            if self.src_lang == self.tgt_lang:
                raise ValidationError("Source and target must differ.")


class NodeSlotOverride(models.Model):
    """An admin's job-slot count for one node id; it wins over what the node asks for."""

    node_id = models.CharField(
        max_length=13,
        unique=True,
        validators=[RegexValidator(r"^node-[0-9a-fA-F]{8}$", "A node id: node- and 8 hex digits.")],
    )
    slots = models.PositiveIntegerField(validators=[MinValueValidator(1)])

    class Meta:
        ordering = ["node_id"]
        verbose_name = "node slot override"

    def __str__(self) -> str:
        return f"{self.node_id}: {self.slots} slots"


class PoolImport(models.Model):
    """One ``pools_import`` run that replaced the configuration: who ran it, when, the file and
    its hash, and which pools it added, removed or changed (the admin's log has the rest)."""

    at = models.DateTimeField(auto_now_add=True)
    by = models.CharField(max_length=150, help_text="The account that ran the command, and its host.")
    file_name = models.CharField(max_length=500)
    file_sha256 = models.CharField("file SHA-256", max_length=64)
    pools = models.PositiveIntegerField(help_text="How many pools the file holds.")
    added = models.JSONField(default=list, blank=True)
    removed = models.JSONField(default=list, blank=True)
    changed = models.JSONField(default=list, blank=True)
    touched = models.TextField(
        blank=True, editable=False, help_text="The names it added, removed or changed, as ,a,b, (found by name)."
    )

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "pools_import run"

    def __str__(self) -> str:
        return f"{self.file_name} ({self.file_sha256[:12]}) at {self.at:%Y-%m-%d %H:%M:%S}"

    @staticmethod
    def touching(name: str) -> str:
        """The ``touched__contains`` value that finds the runs that touched pool ``name``."""
        return f",{name},"
