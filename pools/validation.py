"""What a pool's language rules may name: language codes. One check, used by the model, the
admin's form and ``pools_import``, with a sentence a person understands."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

LANGUAGE_CODE_MAX = 16  # the longest code a node may declare
_LANGUAGE_CODE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*")
LANGUAGE_CODE_SHAPE = f"letters, digits and '-', like zh, en or pt-BR, at most {LANGUAGE_CODE_MAX} characters"


def language_code_problem(code: str) -> str | None:
    """Why ``code`` is not a language code a pool may name, or None when it is one."""
    if code.lower() == "auto":
        return "'auto' marks a two-way session, it is not a language"
    if not (2 <= len(code) <= LANGUAGE_CODE_MAX and _LANGUAGE_CODE.fullmatch(code)):
        return f"{code[:40]!r} is not a language code ({LANGUAGE_CODE_SHAPE})"
    return None


def validate_language_code(value: str) -> None:
    """Model field validator (Django shows the message beside the field)."""
    problem = language_code_problem(value)
    if problem:
        raise ValidationError(problem[:1].upper() + problem[1:] + ".", code="language_code")


def check_language_code(code: str, field: str) -> None:
    """The same check, with a sentence that names the field (``field`` as a person reads it)."""
    problem = language_code_problem(code)
    if problem:
        raise ValidationError(f"{field}: {problem}.", code="language_code")
