"""JIDs as the command layer compares them: split, bare, lower-cased, and never an exception.

A JID is ``localpart@domainpart/resourcepart``; the localpart and domain are case-insensitive (nodeprep and
nameprep fold case), the resource is not. The adapter hands us whatever a stanza's ``from`` says, and a
hypothesis test hands us anything at all, so parsing here is total: malformed input gives empty parts, which
no access rule matches.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Jid:
    local: str  # lower-cased; "" for a server or component
    domain: str  # lower-cased
    resource: str  # as given; "" for a bare JID

    @property
    def bare(self) -> str:
        return f"{self.local}@{self.domain}" if self.local else self.domain

    @property
    def full(self) -> str:
        return f"{self.bare}/{self.resource}" if self.resource else self.bare


def parse(text: str) -> Jid:
    """Split a JID; the resource may hold ``@`` and ``/``, the localpart and domain may not."""
    bare, _, resource = text.partition("/")
    local, at, domain = bare.partition("@")
    if not at:
        local, domain = "", bare
    return Jid(local.strip().lower(), domain.strip().lower(), resource)


def bare(text: str) -> str:
    """The bare JID, normalised (``Alice@Example.ORG/phone`` -> ``alice@example.org``)."""
    return parse(text).bare
