"""How names and payloads cross the API: str in as UTF-8, bytes as they are; handles and names out as str."""

from __future__ import annotations


def to_bytes(value: str | bytes | bytearray | memoryview, what: str = "value") -> bytes:
    """Names and payloads: str is sent as UTF-8, bytes as they are."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def text(value: bytes) -> str:
    """Bytes from the wire as str, without losing undecodable bytes (surrogateescape round-trips them)."""
    return value.decode("utf-8", "surrogateescape")


class JobFields:
    """The names a job carries on both sides (a client's Task, a worker's Job), as str."""

    _function: bytes
    _unique: bytes
    _handle: bytes

    @property
    def function_name(self) -> str:
        return text(self._function)

    @property
    def function(self) -> str:
        return text(self._function)

    @property
    def unique(self) -> str:
        return text(self._unique)

    @property
    def handle(self) -> str | None:
        """The server's job handle (ASCII, e.g. ``H:host:42``); None before the server assigned one."""
        return self._handle.decode("ascii", "replace") if self._handle else None
