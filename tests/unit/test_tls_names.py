"""protocols/tls.py without a network: the names a client certificate gives an identity (subject CN, then
subjectAltName DNS names, e-mail addresses and URIs), nothing from a plaintext transport, and the server's
refusal of certificate files that cannot work together."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from OpenSSL import SSL, crypto

from protocols.tls import TlsError, TlsFiles, certificate_names, handshake_error, peer_names, server_options
from tests.tlscerts import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_pki(tmp_path_factory.mktemp("pki"))


def load(path: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def test_common_name_comes_first_then_dns_email_and_uri_without_repeats(pki) -> None:  # type: ignore[no-untyped-def]
    san = [
        x509.UniformResourceIdentifier("spiffe://example.org/resizer"),
        x509.RFC822Name("ops@example.org"),
        x509.DNSName("worker-1.example.org"),
        x509.DNSName("alice"),  # the CN again: not repeated
        x509.IPAddress(__import__("ipaddress").ip_address("10.0.0.1")),  # not a name
    ]
    cert, _ = pki.client("alice", san)
    assert certificate_names(load(cert)) == [
        "alice",
        "worker-1.example.org",
        "ops@example.org",
        "spiffe://example.org/resizer",
    ]


def test_a_certificate_without_cn_or_san_has_no_names(pki) -> None:  # type: ignore[no-untyped-def]
    cert = x509.load_pem_x509_certificate(Path(pki.client("x")[0]).read_bytes())
    bare = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(1)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
        .sign(pki.authority.key, __import__("cryptography.hazmat.primitives.hashes", fromlist=["SHA256"]).SHA256())
    )
    assert certificate_names(bare) == []


class FakeTlsTransport:
    """What Twisted's TLSMemoryBIOProtocol offers: getPeerCertificate() (pyOpenSSL's X509, or None)."""

    def __init__(self, certificate: crypto.X509 | None) -> None:
        self.certificate = certificate

    def getPeerCertificate(self) -> crypto.X509 | None:  # noqa: N802
        return self.certificate


def test_peer_names_of_transports(pki) -> None:  # type: ignore[no-untyped-def]
    cert = crypto.X509.from_cryptography(load(pki.client("bob", [x509.DNSName("bob.example.org")])[0]))
    assert peer_names(FakeTlsTransport(cert)) == ["bob", "bob.example.org"]
    assert peer_names(FakeTlsTransport(None)) == []  # no certificate asked for or given
    assert peer_names(object()) == []  # plaintext: no getPeerCertificate at all


def test_handshake_errors_read_as_openssl_reasons() -> None:
    error = SSL.Error([("SSL routines", "", "certificate verify failed")])
    assert handshake_error(error) == "certificate verify failed"
    assert handshake_error(SSL.Error("odd")) == "odd"


def test_mismatched_or_missing_files_are_refused_with_the_option_named(pki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other_key = pki.client("someone")[1]
    with pytest.raises(TlsError, match="is not the key of --ssl-certificate"):
        server_options(TlsFiles(pki.server_cert, other_key))
    with pytest.raises(TlsError, match="--ssl-ca-file .*No such file"):
        server_options(TlsFiles(pki.server_cert, pki.server_key, str(tmp_path / "none.pem")))
    (tmp_path / "text.pem").write_text("hello")
    with pytest.raises(TlsError, match="--ssl-key .*not an unencrypted PEM private key"):
        server_options(TlsFiles(pki.server_cert, str(tmp_path / "text.pem")))


@pytest.mark.parametrize(("mode", "flags"), [
    ("none", SSL.VERIFY_NONE),
    ("optional", SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE),
    ("required", SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT | SSL.VERIFY_CLIENT_ONCE),
])  # fmt: skip
def test_client_certificate_modes_set_openssl_verification(pki, mode: str, flags: int) -> None:  # type: ignore[no-untyped-def]
    context = server_options(TlsFiles(pki.server_cert, pki.server_key, pki.ca, mode)).getContext()
    assert context.get_verify_mode() == flags
    assert server_options(TlsFiles(pki.server_cert, pki.server_key)).getContext().get_verify_mode() == 0  # no CA
