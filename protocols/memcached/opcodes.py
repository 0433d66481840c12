"""The binary protocol's numbers: magic bytes, opcodes, response statuses (memcached's protocol_binary.h)."""

from __future__ import annotations

REQUEST_MAGIC = 0x80  # also how memcached tells a binary connection from a text one: its first byte
RESPONSE_MAGIC = 0x81

GET = 0x00
SET = 0x01
ADD = 0x02
REPLACE = 0x03
DELETE = 0x04
INCREMENT = 0x05
DECREMENT = 0x06
QUIT = 0x07
FLUSH = 0x08
GETQ = 0x09
NOOP = 0x0A
VERSION = 0x0B
GETK = 0x0C
GETKQ = 0x0D
APPEND = 0x0E
PREPEND = 0x0F
STAT = 0x10
SETQ = 0x11
ADDQ = 0x12
REPLACEQ = 0x13
DELETEQ = 0x14
INCREMENTQ = 0x15
DECREMENTQ = 0x16
QUITQ = 0x17
FLUSHQ = 0x18
APPENDQ = 0x19
PREPENDQ = 0x1A
TOUCH = 0x1C
GAT = 0x1D
GATQ = 0x1E
GATK = 0x23
GATKQ = 0x24

#: Quiet opcodes: nominal answers (a hit's absence, a success) are left out; failures are still sent.
QUIET = frozenset({GETQ, GETKQ, GATQ, GATKQ, SETQ, ADDQ, REPLACEQ, DELETEQ, INCREMENTQ, DECREMENTQ})
QUIET |= frozenset({QUITQ, FLUSHQ, APPENDQ, PREPENDQ})

#: Retrievals whose answer echoes the key (what php-memcached and ``memccat --binary`` match replies by).
WITH_KEY = frozenset({GETK, GETKQ, GATK, GATKQ})

GETS = frozenset({GET, GETQ, GETK, GETKQ})
GATS = frozenset({GAT, GATQ, GATK, GATKQ})

#: Storage opcodes and the command each stands for.
STORE_COMMANDS = {
    SET: "set",
    SETQ: "set",
    ADD: "add",
    ADDQ: "add",
    REPLACE: "replace",
    REPLACEQ: "replace",
    APPEND: "append",
    APPENDQ: "append",
    PREPEND: "prepend",
    PREPENDQ: "prepend",
}

# Response statuses.
SUCCESS = 0x00
KEY_ENOENT = 0x01
KEY_EEXISTS = 0x02
E2BIG = 0x03
EINVAL = 0x04
NOT_STORED = 0x05
DELTA_BADVAL = 0x06
UNKNOWN_COMMAND = 0x81
ENOMEM = 0x82  # memcached's status for its SERVER_ERRORs over binary (the text after the prefix as body)

#: memcached's body for an error status sent without a message of its own.
STATUS_TEXT = {
    KEY_ENOENT: b"Not found",
    KEY_EEXISTS: b"Data exists for key.",
    E2BIG: b"Too large.",
    EINVAL: b"Invalid arguments",
    NOT_STORED: b"Not stored.",
    DELTA_BADVAL: b"Non-numeric server-side value for incr or decr",
    UNKNOWN_COMMAND: b"Unknown command",
    ENOMEM: b"Out of memory",
}
