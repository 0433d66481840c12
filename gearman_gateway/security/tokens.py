"""Secrets that name an identity: made, hashed for the config file, and checked in constant time.

A token is a random secret of ``TOKEN_BYTES`` bytes (``gearmand --hash-token`` makes one when given none).
The config file holds only ``sha256:<hex>`` of it. A fast hash is the right one here, and a slow one
(scrypt, PBKDF2) the wrong one: a slow hash protects guessable passwords, but these secrets carry 256 bits
of chance, so nobody can search them however fast the hash; and a slow hash would let any peer that
connects burn the single reactor thread's time with every wrong guess it sends. Tokens shorter than
``MIN_TOKEN_LENGTH`` are refused at hashing time, so a short, guessable one never reaches a config file.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

#: Random bytes in a token ``--hash-token`` makes: 256 bits, beyond any search.
TOKEN_BYTES = 32
#: Shortest token --hash-token hashes: 20 characters of base64 carry 120 bits when made at random.
MIN_TOKEN_LENGTH = 20
#: What a stored hash starts with (the scheme, so that another can be added later without ambiguity).
SCHEME = "sha256:"
_HEX_LENGTH = 64


class TokenError(ValueError):
    pass


def new_token() -> str:
    """A fresh random token (URL-safe base64: it goes in headers, option packets and command lines)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """What the config file holds for ``token``: ``sha256:<64 hex digits>``."""
    if len(token) < MIN_TOKEN_LENGTH:
        raise TokenError(f"a token must be at least {MIN_TOKEN_LENGTH} characters (run --hash-token without one)")
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise TokenError("a token must be printable ASCII without spaces")
    return SCHEME + hashlib.sha256(token.encode()).hexdigest()


def parse_hash(text: str) -> bytes:
    """The digest of a stored ``sha256:<hex>``; TokenError says what is wrong with it."""
    if not text.startswith(SCHEME) or len(text) != len(SCHEME) + _HEX_LENGTH:
        raise TokenError(f"must be {SCHEME}<64 hex digits> (gearmand --hash-token prints it), not {text[:12]!r}...")
    try:
        return bytes.fromhex(text[len(SCHEME) :])
    except ValueError:
        raise TokenError(f"must be {SCHEME}<64 hex digits>") from None


def digest(offered: bytes) -> bytes:
    return hashlib.sha256(offered).digest()


def matches(offered_digest: bytes, stored: bytes) -> bool:
    """Constant time in the secret: ``hmac.compare_digest`` of the two digests."""
    return hmac.compare_digest(offered_digest, stored)
