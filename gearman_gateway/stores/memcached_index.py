"""Which job ids the memcached store holds, as memcached items it can read back: no I/O here.

memcached cannot list its keys reliably (``lru_crawler metadump`` walks the LRUs while memcached moves items
between them, and misses some), so the store keeps this index beside the jobs. Ids are grouped in buckets of
BUCKET_IDS consecutive ids; each bucket is one item holding a bitmap, and one head item lists the buckets in
use. A batch of new jobs (consecutive ids) changes one or two buckets, a batch of finished jobs a few, so a
commit rewrites a few hundred bytes whatever the length of the queue, and no item nears memcached's size limit
(the head holds 8 bytes per bucket in use).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

#: Ids per bucket: a 512-byte bitmap.
BUCKET_IDS = 4096
BUCKET_BYTES = BUCKET_IDS // 8
HEAD_MAGIC = b"ggi1"
_BUCKET_NUMBER = struct.Struct(">Q")


class JobIndex:
    """The ids held, as a bitmap (a Python int) per bucket number."""

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}

    def __contains__(self, job_id: int) -> bool:
        return bool(self.buckets.get(job_id // BUCKET_IDS, 0) >> (job_id % BUCKET_IDS) & 1)

    def ids(self) -> Iterator[int]:
        for number in sorted(self.buckets):
            bits, base = self.buckets[number], number * BUCKET_IDS
            while bits:
                low = bits & -bits
                yield base + low.bit_length() - 1
                bits ^= low

    def changed(self, add: Iterable[int] = (), remove: Iterable[int] = ()) -> dict[int, int]:
        """The buckets that adding and removing these ids would change, with their new bitmaps (0: empty);
        nothing changes until ``apply``, so a failed write leaves the index as it was."""
        new: dict[int, int] = {}
        for job_id, present in [*((i, True) for i in add), *((i, False) for i in remove)]:
            number = job_id // BUCKET_IDS
            bits = new.get(number, self.buckets.get(number, 0))
            bit = 1 << (job_id % BUCKET_IDS)
            new[number] = bits | bit if present else bits & ~bit
        return {number: bits for number, bits in new.items() if bits != self.buckets.get(number, 0)}

    def apply(self, changed: dict[int, int]) -> bool:
        """Take the changes in; True if the set of buckets in use changed (the head must be rewritten)."""
        before = set(self.buckets)
        for number, bits in changed.items():
            if bits:
                self.buckets[number] = bits
            else:
                self.buckets.pop(number, None)
        return set(self.buckets) != before

    # -- items

    def head(self) -> bytes:
        return HEAD_MAGIC + b"".join(_BUCKET_NUMBER.pack(number) for number in sorted(self.buckets))

    @staticmethod
    def bucket(bits: int) -> bytes:
        return bits.to_bytes(BUCKET_BYTES, "little")

    @staticmethod
    def head_numbers(value: bytes) -> list[int]:
        """Bucket numbers from a head item; a value that is not one gives none."""
        if not value.startswith(HEAD_MAGIC) or (len(value) - len(HEAD_MAGIC)) % _BUCKET_NUMBER.size:
            return []
        return [number for (number,) in _BUCKET_NUMBER.iter_unpack(value[len(HEAD_MAGIC) :])]

    @staticmethod
    def bucket_bits(value: bytes) -> int:
        return int.from_bytes(value, "little") if len(value) == BUCKET_BYTES else 0
