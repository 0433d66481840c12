"""The memcached protocols' size limits, each with the reason for its value.

Those marked "memcached's" are the real server's (1.6.18) and keep clients' expectations; the others bound
what one connection can make the server hold in memory, which memcached leaves unbounded.
"""

from __future__ import annotations

#: memcached's KEY_MAX_LENGTH: keys longer than this are refused with ``CLIENT_ERROR bad command line
#: format`` (text) or ``Invalid arguments`` (binary). Clients check it too (pymemcache raises before sending).
MAX_KEY_LENGTH = 250

#: Default largest value accepted, in bytes: memcached's default item size limit (``-I 1m``). A larger
#: value is skipped as it arrives, never held, and answered ``SERVER_ERROR object too large for cache``.
DEFAULT_MAX_VALUE_SIZE = 1024 * 1024

#: memcached refuses a data length over INT_MAX - 2 as a malformed line, whatever its item size limit.
MAX_DECLARED_VALUE_SIZE = 2**31 - 1 - 2

#: Default longest command line (without its ``\r\n``). memcached closes a connection that sends 2048
#: bytes without a newline, unless they start a ``get``/``gets``; every other command (a 250-byte key,
#: some numbers, 17 meta flags with a 32-byte opaque) fits well within it.
DEFAULT_MAX_LINE = 2048

#: Default longest retrieval line (``get``/``gets``/``gat``/``gats`` with many keys). memcached grows its
#: buffer without bound for them; 1 MiB holds 4,000 keys of 250 bytes, more than any client batches.
DEFAULT_MAX_MULTIGET_LINE = 1024 * 1024

#: memcached's MFLAG_MAX_OPT_LENGTH (20 tokens, counted with the command, the key and an end marker):
#: at most 17 flags on ``mg``/``md``, 16 on ``ms`` (whose data length is a token too).
MAX_META_TOKENS = 19

#: memcached's MFLAG_MAX_OPAQUE_LENGTH: an ``O`` token of up to 32 bytes, the ``O`` included.
MAX_OPAQUE_TOKEN = 32

#: Longest decimal number token looked at: 20 digits hold any unsigned 64-bit value (plus a sign). Longer
#: ones are refused before conversion, so a huge digit string costs nothing.
MAX_NUMBER_TOKEN = 21
