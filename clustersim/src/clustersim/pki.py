"""Certificates for clustersim's TLS endpoints: a certificate authority and leaf certificates.

The API server serves with a leaf for 127.0.0.1 and localhost; each simulated kubelet serves its
API with a leaf for its node's addresses, signed by a CA the API server side can be told about
(`--kubelet-certificate-authority`), as a cluster CA signs kubelet serving certificates. The API
server's `tls.py` and the agent's kubelet server both build on this module.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=3650)
CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"


@dataclass(frozen=True)
class CertificateAuthority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path


@dataclass(frozen=True)
class LeafFiles:
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert_path), str(self.key_path))
        # HTTP/1.1 only: Go clients fall back from h2 when the server does not offer it
        context.set_alpn_protocols(["http/1.1"])
        return context


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def load_or_create_ca(directory: Path, common_name: str) -> CertificateAuthority:
    """The CA in `directory` (ca.crt + ca.key), created when absent."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    if cert_path.exists() and key_path.exists():
        return load_ca(cert_path, key_path)
    now = _now()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_private(key_path, _key_pem(key))
    return CertificateAuthority(certificate, key, cert_path)


def load_ca(cert_path: Path, key_path: Path) -> CertificateAuthority:
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path}: the CA key must be an EC private key")
    return CertificateAuthority(certificate, key, cert_path)


def issue_serving(ca: CertificateAuthority, directory: Path, stem: str, common_name: str,
                  ips: list[str], dns_names: list[str]) -> LeafFiles:
    """A serving certificate for these addresses, signed by `ca`, written as STEM.crt/.key."""
    directory.mkdir(parents=True, exist_ok=True)
    files = LeafFiles(directory / f"{stem}.crt", directory / f"{stem}.key")
    now = _now()
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    names += [x509.DNSName(dns) for dns in dns_names]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    files.cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    _write_private(files.key_path, _key_pem(key))
    return files
