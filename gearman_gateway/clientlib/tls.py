"""TLS for the client library and tools: one ``ssl.SSLContext`` from gear's option names (``ssl_ca``,
``ssl_cert``, ``ssl_key``), used by both transports and by gearadmin."""

from __future__ import annotations

import os
import ssl


def client_context(
    ssl_ca: str | None = None, ssl_cert: str | None = None, ssl_key: str | None = None, always: bool = False
) -> ssl.SSLContext | None:
    """None when no option is given and not ``always`` (plaintext). Otherwise a context that verifies the server against
    ``ssl_ca`` (the system's CAs when not given), including its name, and presents ``ssl_cert`` (with
    ``ssl_key``, or a key inside ``ssl_cert``) when given. TLS 1.2 or newer."""
    if ssl_ca is None and ssl_cert is None and ssl_key is None and not always:
        return None
    if ssl_key is not None and ssl_cert is None:
        raise ValueError("ssl_key needs ssl_cert (the certificate it belongs to)")
    context = ssl.create_default_context(cafile=ssl_ca)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ssl_cert is not None:
        context.load_cert_chain(ssl_cert, ssl_key)
    return context


def tool_context(ca_file: str | None, certificate: str | None, key: str | None) -> ssl.SSLContext:
    """``gearman -S`` and ``gearadmin -S``: always TLS; a file that cannot be used is named by its flag."""
    for flag, path in (("--ssl-ca-file", ca_file), ("--ssl-certificate", certificate), ("--ssl-key", key)):
        if path is not None and not os.access(path, os.R_OK):
            raise ValueError(f"{flag} {path}: not a readable file")
    try:
        context = client_context(ca_file, certificate, key, always=True)
    except ssl.SSLError as error:
        raise ValueError(f"--ssl-certificate {certificate} / --ssl-key {key}: {error.reason or error}") from None
    assert context is not None
    return context
