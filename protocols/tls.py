"""TLS for the listeners: the server's certificate options (``--ssl-certificate``, ``--ssl-key``,
``--ssl-ca-file``, ``--ssl-client-cert``) made into one Twisted context factory, TLS endpoints beside or
instead of the plaintext ones, and the names of a client's verified certificate (``peer_names``) for
identities.

A client certificate is asked for only when a CA file is given; a presented one that does not chain to it
(or has expired) fails the handshake, so any certificate a connection carries was verified. TLS 1.2 is the
floor (PyPI gear turns 1.3 off), 1.3 is on. Imported only when a listener uses TLS: pyOpenSSL is needed then.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

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
    try:
        found = x509.load_pem_x509_certificates(_read(path, flag))
    except ValueError:
        found = []
    if not found:
        raise TlsError(f"{flag} {path}: no PEM certificate in it")
    return found


def server_options(files: TlsFiles) -> Any:
    """A Twisted ``CertificateOptions`` (an ``IOpenSSLServerConnectionCreator``) for every TLS listener."""
    from OpenSSL import crypto
    from twisted.internet.ssl import CertificateOptions, TLSVersion

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
    return CertificateOptions(
        privateKey=crypto.PKey.from_cryptography_key(key),  # type: ignore[arg-type]
        certificate=crypto.X509.from_cryptography(leaf),
        extraCertChain=[crypto.X509.from_cryptography(c) for c in chain[1:]],
        verify=verify,
        caCerts=[crypto.X509.from_cryptography(c) for c in authorities] or None,
        requireCertificate=files.client_cert == "required",
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )


_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def tls_endpoint(reactor: Any, address: str, port: int, backlog: int, creator: Any) -> tuple[str, Any]:
    """A TLS endpoint on one address and port, with a description in endpoint-string form for messages."""
    from twisted.internet.endpoints import SSL4ServerEndpoint

    return f"tls:port={port}:interface={address}", SSL4ServerEndpoint(reactor, port, creator, backlog, address)


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
