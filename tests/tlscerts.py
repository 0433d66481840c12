"""Certificates made at test time (Python's ``cryptography``): a CA, the server's certificate for 127.0.0.1
and localhost, client certificates signed by it (one expired), and a second CA nobody trusts.

    pki = make_pki(tmp_path)
    pki.server_cert, pki.server_key, pki.ca      # gearmand --ssl-certificate/--ssl-key/--ssl-ca-file
    pki.client("alice")                          # (cert, key) paths of a client certificate, CN=alice
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DAY = datetime.timedelta(days=1)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # fast to make, unlike RSA


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> str:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(path)


def _write_cert(path: Path, cert: x509.Certificate) -> str:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(path)


@dataclass
class Authority:
    """A CA that signs certificates."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=_key)
    cert: x509.Certificate = field(init=False)

    def __post_init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(self.name))
            .issuer_name(_name(self.name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY)
            .not_valid_after(now + 30 * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self, common_name: str, san: list[x509.GeneralName], server: bool, expired: bool = False
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        start, end = (now - 10 * DAY, now - DAY) if expired else (now - DAY, now + 30 * DAY)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


@dataclass
class Pki:
    directory: Path
    authority: Authority
    ca: str  # the CA's certificate file: --ssl-ca-file, and what clients verify the server with
    server_cert: str
    server_key: str

    def client(
        self,
        common_name: str,
        san: list[x509.GeneralName] | None = None,
        expired: bool = False,
        by: Authority | None = None,
    ) -> tuple[str, str]:
        """(certificate file, key file) of a client certificate."""
        cert, key = (by or self.authority).issue(common_name, san or [], server=False, expired=expired)
        stem = f"client-{common_name}{'-expired' if expired else ''}{'-' + by.name if by else ''}"
        return _write_cert(self.directory / f"{stem}.pem", cert), _write_key(self.directory / f"{stem}.key", key)


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    authority = Authority("gearman-gateway test CA")
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert, key = authority.issue("localhost", san, server=True)
    return Pki(
        directory,
        authority,
        _write_cert(directory / "ca.pem", authority.cert),
        _write_cert(directory / "server.pem", cert),
        _write_key(directory / "server.key", key),
    )
