"""``pools_changed``: sent after every committed change to the pool configuration.

Sent by the admin and by ``pools_import`` once their transaction commits; ``dispatch`` listens
and republishes live state. ``pools`` itself never touches Redis.
"""

from django.db import transaction
from django.dispatch import Signal

pools_changed = Signal()


def announce_pools_changed() -> None:
    """Send ``pools_changed`` when the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: pools_changed.send(sender=None))
