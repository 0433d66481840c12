"""TLS for the listeners: the server's certificate options (``--ssl-certificate``, ``--ssl-key``,
``--ssl-ca-file``, ``--ssl-client-cert``) made into one Twisted context factory, TLS endpoints beside or
instead of the plaintext ones, and the names of a client's verified certificate (``peer_names``) for
identities.

A client certificate is asked for only when a CA file is given; a presented one that does not chain to it
(or has expired) fails the handshake, so any certificate a connection carries was verified. TLS 1.2 is the
floor (PyPI gear turns 1.3 off), 1.3 is on. Imported only when a listener uses TLS: pyOpenSSL is needed then.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

log = logging.getLogger("gearman_gateway.server")

#: ``--ssl-client-cert`` values: ask for no certificate, accept a client without one, refuse it.
CLIENT_CERT_MODES = ("none", "optional", "required")


class TlsError(ValueError):
    """A certificate, key or CA file cannot be used; the message names the option and the file."""


@dataclass(frozen=True)
class TlsFiles:
    """What a TLS listener is made from (Settings' ``ssl_*`` fields)."""

    certificate: str
    key: str
    ca_file: str | None = None
    client_cert: str = "optional"

    @classmethod
    def from_settings(cls, settings: Any) -> TlsFiles:
        if not settings.ssl_certificate or not settings.ssl_key:
            raise TlsError("a TLS listener needs --ssl-certificate and --ssl-key (YAML tls.certificate, tls.key)")
        return cls(settings.ssl_certificate, settings.ssl_key, settings.ssl_ca_file, settings.ssl_client_cert)


def _read(path: str, flag: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise TlsError(f"{flag} {path}: {error.strerror}") from None


def _certificates(path: str, flag: str) -> list[x509.Certificate]:
    text = _read(path, flag)
    try:
        found = x509.load_pem_x509_certificates(text)
    except ValueError:
        found = []
    if not found:
        raise TlsError(f"{flag} {path}: no PEM certificate in it")
    return found


def server_options(files: TlsFiles) -> Any:
    """A Twisted ``CertificateOptions`` (an ``IOpenSSLServerConnectionCreator``) for every TLS listener."""
    chain = _certificates(files.certificate, "--ssl-certificate")
    try:
        key = serialization.load_pem_private_key(_read(files.key, "--ssl-key"), password=None)
    except (ValueError, TypeError) as error:
        raise TlsError(f"--ssl-key {files.key}: not an unencrypted PEM private key ({error})") from None
    leaf = chain[0]
    if leaf.public_key().public_bytes(*_SPKI) != key.public_key().public_bytes(*_SPKI):
        raise TlsError(f"--ssl-key {files.key} is not the key of --ssl-certificate {files.certificate}")
    verify = files.ca_file is not None and files.client_cert != "none"
    authorities = _certificates(files.ca_file, "--ssl-ca-file") if verify and files.ca_file else []
    return _ServerOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
        certificate=crypto.X509.from_cryptography(leaf),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
        verify=verify,
        caCerts=[crypto.X509.from_cryptography(c) for c in authorities] or None,
        requireCertificate=files.client_cert == "required",
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class _ServerOptions(CertificateOptions):
    """Twisted's options, except that a client offering ALPN protocols (curl offers h2 and http/1.1) goes
    on without one: Twisted 26's callback answers ``b""`` to a list it shares nothing with, which
    pyOpenSSL 26 turns into a failed handshake ("internal error" alert)."""

    def _makeContext(self) -> SSL.Context:  # noqa: N802
        context = super()._makeContext()
        context.set_alpn_select_callback(_no_alpn)
        mode = context.get_verify_mode()
        if mode != SSL.VERIFY_NONE:
            context.set_verify(mode, _note_verify_error)
        return context


#: OpenSSL's X509_V_ERR numbers of the failures a client certificate most often has.
VERIFY_ERRORS = {
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in chain",
    20: "issuer not known (not signed by a CA of --ssl-ca-file)",
    21: "issuer not known (not signed by a CA of --ssl-ca-file)",
    26: "certificate not meant for this purpose",
}


def _note_verify_error(connection: SSL.Connection, certificate: Any, error: int, depth: int, ok: int) -> bool:
    """OpenSSL's verdict, unchanged; a failure is kept on the connection for the refusal's log line."""
    if not ok:
        protocol = connection.get_app_data()
        subject = certificate.get_subject().CN if certificate is not None else None
        reason = VERIFY_ERRORS.get(error, f"verify error {error}")
        protocol.verify_failure = f"{reason} (subject CN={subject}, depth {depth})"
    return bool(ok)


def _no_alpn(connection: SSL.Connection, offered: Sequence[bytes]) -> Any:
    return SSL.NO_OVERLAPPING_PROTOCOLS


def tls_listener(
    reactor: Any, address: str, port: int, backlog: int, creator: Any, factory: Any
) -> tuple[str, Any, TLSMemoryBIOFactory]:
    """A TLS listener on one address and port: (a description for messages, a TCP endpoint, the
    frontend's factory wrapped in TLS). Twisted's own SSL endpoint would do the same but log nothing
    when a handshake fails."""
    kind = TCP6ServerEndpoint if ":" in address else TCP4ServerEndpoint
    endpoint = kind(reactor, port, backlog, address)
    return f"tls:port={port}:interface={address}", endpoint, _LoggedTlsFactory(creator, False, factory)


class _LoggedTlsProtocol(TLSMemoryBIOProtocol):
    """Twisted's TLS layer, saying why a handshake failed (another CA, an expired certificate, none
    where one is required, plaintext on the TLS port): the frontend under it never saw the client."""

    verify_failure: str | None = None  # set by _note_verify_error

    def _flushSendBIO(self) -> None:  # noqa: N802
        """Twisted's, but the records go straight to the socket when nothing is waiting before them, as
        plaintext connections write (Twisted's transport would write them a poll later, with two epoll
        updates); what the socket does not take goes the transport's way."""
        try:
            data = self._tlsConnection.bio_read(2**15)
        except SSL.WantReadError:
            return
        transport = self.transport
        sock = getattr(transport, "socket", None)
        if sock is not None and transport.connected and not transport.dataBuffer and not transport._tempDataLen:
            try:
                sent = sock.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:  # the transport's own write meets the error and closes as Twisted does
                sent = 0
            data = data[sent:]
        if data:
            transport.write(data)

    def _checkHandshakeStatus(self) -> None:  # noqa: N802
        """Twisted's step of the handshake; once it is done, before any application data reaches the
        frontend, a verified client certificate's names may give the connection its identity."""
        done = self._handshakeDone
        super()._checkHandshakeStatus()
        if self._handshakeDone and not done:
            take_certificate_identity(self.wrappedProtocol, self)

    def _tlsShutdownFinished(self, reason: Any) -> None:  # noqa: N802
        error = reason.value if reason is not None else None
        if isinstance(error, SSL.Error) and not isinstance(error, SSL.SysCallError) and not self._handshakeDone:
            peer = getattr(self.transport.getPeer(), "host", "?")
            log.log(25, "TLS handshake with %s refused: %s", peer, self.verify_failure or handshake_error(error))
        super()._tlsShutdownFinished(reason)


class _LoggedTlsFactory(TLSMemoryBIOFactory):
    protocol = _LoggedTlsProtocol


def take_certificate_identity(connection: Any, tls: Any) -> None:
    """The identity (``security.identities.*.certificates``) that the client certificate's names map to,
    for the frontend's connection: binary connections and the HTTP and memcached sessions have
    ``take_identity(grant)``. A certificate that names no identity leaves the connection anonymous; an
    identity at its connection cap closes it (Access.attach says why)."""
    names = peer_names(tls)
    access = getattr(getattr(connection, "context", None), "access", None)
    if not names or access is None:
        return
    holder = getattr(connection, "session", None) or connection
    take = getattr(holder, "take_identity", None)
    peer = getattr(tls.transport.getPeer(), "host", "?")
    grant = access.identity_for_certificate(names)
    if take is None or grant is None:
        log.info("TLS client %s: certificate names %s, which no identity lists: anonymous", peer, ", ".join(names))
        return
    if take(grant) is not None:
        tls.loseConnection()


def handshake_error(error: SSL.Error) -> str:
    """OpenSSL's reasons ("certificate verify failed", "wrong version number"), not its tuple list."""
    details = error.args[0] if error.args and isinstance(error.args[0], list) else []
    reasons = [str(item[-1]) for item in details if isinstance(item, tuple) and item]
    return "; ".join(reasons) or str(error)


def peer_names(transport: Any) -> list[str]:
    """The names of the client's certificate on a TLS connection (none on plaintext, before the handshake,
    or when no certificate was asked for or given): the subject's common names, then the subjectAltName's
    DNS names, e-mail addresses and URIs, in that order, without repeats. Any certificate there was
    verified against ``--ssl-ca-file`` during the handshake (a failing one ends the connection)."""
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return []
    try:
        certificate = get()
    except Exception:  # the handshake is not done (pyOpenSSL raises on some states)
        return []
    if certificate is None:
        return []
    return certificate_names(certificate.to_cryptography())


def certificate_names(certificate: x509.Certificate) -> list[str]:
    """Subject CN(s), then SAN DNS names, e-mail addresses and URIs (see ``peer_names``)."""
    names = [str(a.value) for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for kind in (x509.DNSName, x509.RFC822Name, x509.UniformResourceIdentifier):
            names.extend(san.get_values_for_type(kind))
    return list(dict.fromkeys(names))
