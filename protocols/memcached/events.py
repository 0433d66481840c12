"""The commands a memcached client sends, as the decoder hands them over: one small class per command.

Events from the three dialects share classes where the command means the same (``set`` over text or
binary is one ``Store``); the meta commands keep their own, since their flags change what they do and
what they answer. Binary requests carry ``opcode`` and ``opaque`` so that their reply can be built (and
``opcode`` is None for text); ``noreply`` is the text protocol's "send nothing back at all", while a quiet
binary opcode or a meta ``q`` only hides the nominal answer (see ``replies``).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.memcached import opcodes


@dataclass(slots=True)
class Get:
    """``get``/``gets``/``gat``/``gats`` (several keys, as sent), or one binary GET/GETK/GAT and quiet kin."""

    keys: tuple[bytes, ...]
    with_cas: bool = False  # gets/gats: VALUE lines carry the cas unique
    exptime: int | None = None  # gat/gats/GAT*: touch each hit to this expiration time
    opcode: int | None = None
    opaque: int = 0

    @property
    def quiet(self) -> bool:
        """A binary GETQ/GETKQ/GATQ/GATKQ: a miss sends nothing."""
        return self.opcode in opcodes.QUIET

    @property
    def return_key(self) -> bool:
        """A binary GETK/GETKQ/GATK/GATKQ: the reply echoes the key."""
        return self.opcode in opcodes.WITH_KEY


@dataclass(slots=True)
class Store:
    """``set``/``add``/``replace``/``append``/``prepend``/``cas`` with its data, over text or binary."""

    command: str  # "set", "add", "replace", "append", "prepend" or "cas"
    key: bytes
    flags: int
    exptime: int
    value: bytes
    noreply: bool = False
    cas: int | None = None  # compare-and-swap: "cas" over text, a non-zero header CAS over binary
    opcode: int | None = None
    opaque: int = 0

    @property
    def quiet(self) -> bool:
        """A binary SETQ/ADDQ/...: success sends nothing, failures are still answered."""
        return self.opcode in opcodes.QUIET


@dataclass(slots=True)
class Delete:
    key: bytes
    noreply: bool = False
    cas: int | None = None  # binary only: delete only while the item's cas is this one
    opcode: int | None = None
    opaque: int = 0

    @property
    def quiet(self) -> bool:
        return self.opcode in opcodes.QUIET


@dataclass(slots=True)
class Touch:
    key: bytes
    exptime: int
    noreply: bool = False
    opcode: int | None = None
    opaque: int = 0


@dataclass(slots=True)
class Arithmetic:
    """``incr``/``decr``, or binary INCREMENT/DECREMENT (which may create the counter on a miss)."""

    key: bytes
    delta: int
    decrement: bool
    noreply: bool = False
    initial: int | None = None  # binary: the value to create on a miss (None: a miss stays a miss)
    exptime: int = 0  # binary: the created counter's expiration time
    opcode: int | None = None
    opaque: int = 0

    @property
    def quiet(self) -> bool:
        return self.opcode in opcodes.QUIET


@dataclass(slots=True)
class FlushAll:
    delay: int = 0  # seconds (or a Unix time) before the flush; 0 or less: now
    noreply: bool = False
    opcode: int | None = None
    opaque: int = 0

    @property
    def quiet(self) -> bool:
        return self.opcode in opcodes.QUIET


@dataclass(slots=True)
class Version:
    opcode: int | None = None
    opaque: int = 0


@dataclass(slots=True)
class Verbosity:
    level: int
    noreply: bool = False


@dataclass(slots=True)
class Quit:
    """The decoder reads nothing after it; a binary QUIT is answered before closing, QUITQ and text not."""

    opcode: int | None = None
    opaque: int = 0


@dataclass(slots=True)
class Stats:
    args: tuple[bytes, ...] = ()  # ``stats items`` -> (b"items",); binary STAT: its key, if any
    opcode: int | None = None
    opaque: int = 0


@dataclass(slots=True)
class Noop:
    """Binary NOOP: answered once everything before it is (php-memcached ends its GETKQ batches with it)."""

    opcode: int = opcodes.NOOP
    opaque: int = 0


#: ``ms`` M token: the classic storage command each mode behaves as.
META_SET_MODES = {"S": "set", "E": "add", "A": "append", "P": "prepend", "R": "replace"}

MetaFlags = tuple[tuple[str, bytes], ...]  # (flag letter, its token) in the order sent: replies keep it


@dataclass(slots=True)
class MetaGet:
    """``mg <key> <flags>*``."""

    key: bytes  # decoded when ``base64``
    meta_flags: MetaFlags = ()
    base64: bool = False  # b: the key came base64-encoded (and goes back so with k)
    quiet: bool = False  # q: a miss sends nothing
    return_value: bool = False  # v: answer VA with the data, not HD
    ttl: int | None = None  # T: update the remaining TTL
    vivify: int | None = None  # N: create a stub on a miss, with this TTL
    recache: int | None = None  # R: win the recache if the TTL left is below this
    no_bump: bool = False  # u: do not bump the item in the LRU


@dataclass(slots=True)
class MetaSet:
    """``ms <key> <datalen> <flags>*`` with its data."""

    key: bytes
    value: bytes
    meta_flags: MetaFlags = ()
    base64: bool = False
    quiet: bool = False  # q: success (HD) sends nothing
    mode: str = "S"  # M: S set, E add, A append, P prepend, R replace
    client_flags: int = 0  # F
    ttl: int = 0  # T
    compare_cas: int | None = None  # C
    invalidate: bool = False  # I
    vivify: int | None = None  # N: append/prepend create the item on a miss, with this TTL

    @property
    def command(self) -> str:
        """The classic storage command this mode behaves as."""
        return META_SET_MODES[self.mode]


@dataclass(slots=True)
class MetaDelete:
    """``md <key> <flags>*``."""

    key: bytes
    meta_flags: MetaFlags = ()
    base64: bool = False
    quiet: bool = False  # q: success (HD) sends nothing
    compare_cas: int | None = None  # C
    invalidate: bool = False  # I: mark stale instead of deleting
    ttl: int | None = None  # T, with I
    remove_value: bool = False  # x: keep the item, drop its value


@dataclass(slots=True)
class MetaNoop:
    """``mn``: answered ``MN`` once everything before it is."""


@dataclass(slots=True)
class Error:
    """A request that cannot be served as sent, with memcached's exact answer to it.

    Send ``reply`` unless ``noreply`` (memcached keeps quiet about errors in a ``noreply`` command it could
    parse that far); after one with ``close`` the decoder reads nothing more: send it, then close.
    """

    reply: bytes
    noreply: bool = False
    close: bool = False


Event = (
    Get
    | Store
    | Delete
    | Touch
    | Arithmetic
    | FlushAll
    | Version
    | Verbosity
    | Quit
    | Stats
    | Noop
    | MetaGet
    | MetaSet
    | MetaDelete
    | MetaNoop
    | Error
)
