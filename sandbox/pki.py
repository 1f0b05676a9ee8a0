"""Certificates for the sandbox API servers: one self-signed CA per state dir, one server cert.

The CA is made on first start and kept, so kubeconfigs written earlier stay valid across
restarts. The server certificate covers every loopback name a client may dial. Tests also make
client certificates here (`issue_client_cert`), e.g. the one an apiserver presents to a webhook.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True)
class ServerPki:
    ca_cert: Path
    server_cert: Path
    server_key: Path

    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.server_cert), str(self.server_key))
        # aiohttp speaks HTTP/1.1 only; advertising it keeps Go clients off HTTP/2.
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(
    common_name: str, validity: datetime.timedelta = _VALIDITY
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA certificate and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_server_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    dns_names: Sequence[str] = (),
    validity: datetime.timedelta = _VALIDITY,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate signed by the CA, valid for every loopback name plus `dns_names`."""
    names: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("localhost"),
        *(x509.DNSName(n) for n in dns_names),
    ]
    return _issue_leaf(
        ca_cert,
        ca_key,
        common_name,
        validity,
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(names),
    )


def issue_client_cert(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    validity: datetime.timedelta = _VALIDITY,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A TLS client certificate signed by the CA (extended key usage clientAuth only, which
    OpenSSL servers check)."""
    return _issue_leaf(ca_cert, ca_key, common_name, validity, ExtendedKeyUsageOID.CLIENT_AUTH)


def _issue_leaf(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    validity: datetime.timedelta,
    usage: x509.ObjectIdentifier,
    *extensions: x509.ExtensionType,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh key and a non-CA certificate for it, signed by the CA, for one extended key
    usage; ``extensions`` (non-critical) come first, as they always did."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    cert = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def save(
    cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, cert_path: Path, key_path: Path
) -> None:
    """Write a certificate and its key as PEM (the key readable by its owner only)."""
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)


def ensure_pki(state_dir: Path) -> ServerPki:
    """Load or create `ca.crt`/`ca.key` and `server.crt`/`server.key` in `state_dir`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key_path = state_dir / "ca.crt", state_dir / "ca.key"
    srv_crt, srv_key = state_dir / "server.crt", state_dir / "server.key"
    if ca_crt.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_crt.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
    else:
        ca_cert, ca_key = make_ca("podseidon-sandbox-ca")
        _write_key(ca_key_path, ca_key)
        ca_crt.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
        srv_crt.unlink(missing_ok=True)
    if not (srv_crt.exists() and srv_key.exists()):
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        cert, key = issue_server_cert(ca_cert, ca_key, "kube-apiserver")
        _write_key(srv_key, key)
        srv_crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return ServerPki(ca_crt, srv_crt, srv_key)
