"""The self-signed certificate a TLS listener uses when the config names none.

``sip.tls`` without ``certificate`` and ``key`` while a ``sip.listen`` entry says
``transport: tls`` (the embedded default config does): on first start a key and a self-signed
certificate are written to ``tls/`` in the config folder (``var/tls/`` for the default), the
key readable by its owner only (0600); later starts load the same pair, so phones that
pinned or accepted the certificate keep working. Phones accept a self-signed certificate
once it is trusted on them; carriers that need a CA-signed one get it through ``sip.tls``.

The pair is written to temporary files and renamed into place, key first, so a crash
midway leaves either no pair or a whole one, never a certificate without its key.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import tempfile
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["CERTIFICATE_FILE", "KEY_FILE", "ensure_self_signed"]

log = structlog.get_logger("switchboard")

CERTIFICATE_FILE = "switchboard.crt"
KEY_FILE = "switchboard.key"
# Ten years: a self-signed certificate is trusted by pinning, not by its dates.
VALIDITY = datetime.timedelta(days=3650)


def ensure_self_signed(folder: Path, hosts: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """The (certificate, key) paths in ``folder``, generating the pair when either is missing.
    ``hosts``: names and addresses the certificate should name besides this machine's."""
    cert_path, key_path = folder / CERTIFICATE_FILE, folder / KEY_FILE
    if cert_path.is_file() and key_path.is_file():
        return cert_path, key_path
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _self_signed(key, hosts)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_path, key_pem, 0o600)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("tls_certificate_generated", certificate=str(cert_path), key=str(key_path))
    return cert_path, key_path


def _self_signed(key: ec.EllipticCurvePrivateKey, hosts: tuple[str, ...]) -> x509.Certificate:
    hostname = socket.gethostname() or "localhost"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    alt: list[x509.GeneralName] = []
    for host in dict.fromkeys((hostname, "localhost", "127.0.0.1", *hosts)):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` atomically, the file created with ``mode`` (never wider)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
