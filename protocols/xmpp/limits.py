"""The chat bot's option limits and defaults, apart from the command layer (``commands``) that enforces them.

``options`` declares the ``--xmpp-*`` flags with these; every ``gearmand`` imports the options of each
installed frontend, so keeping them here spares a server without ``-r xmpp`` importing the whole bot.
"""

from __future__ import annotations

#: Smallest ``max_reply``: room for every fixed text (notes, errors, help) with a room nick in front.
MIN_MAX_REPLY = 1024
DEFAULT_MAX_REPLY = 16 * 1024
DEFAULT_RATE_LIMIT = 60
NO_WORKER_CHOICES = ("reply", "wait")
