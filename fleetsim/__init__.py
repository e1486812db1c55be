"""Simulated GPU nodes and browsers that speak the real protocol over real sockets: the clients
of ``manage.py fleet_simulate`` and of ``make bench``'s load generator.

A client of the scheduler, not a Django app: it imports nothing of ``dispatch``, ``nodes`` or
``pools`` and knows the scheduler only by its wire protocol.

- ``frames.py``: what the nodes and browsers send, shaped as the real ones send it.
- ``node.py``: ``SimNode``, a node that registers, heartbeats and does its jobs by a ``Behaviour``.
- ``browser.py``: ``SimBrowser``, a browser that opens a session and says utterances.
- ``options.py``: the command line and the ``Plan`` it makes; ``fleet.py`` runs a plan;
  ``stats.py`` counts what the clients saw and writes the live line and the summary.
"""
