"""``tenants_changed``: sent after every committed change to tenants, their keys, or which
node tokens belong to a tenant.

Sent by the admin and the ``tenant`` / ``tenant_key`` commands once their transaction commits;
``dispatch`` listens and republishes the tenants to live state. ``tenants`` never touches Redis.
"""

from django.db import transaction
from django.dispatch import Signal

tenants_changed = Signal()


def announce_tenants_changed() -> None:
    """Send ``tenants_changed`` when the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: tenants_changed.send(sender=None))
