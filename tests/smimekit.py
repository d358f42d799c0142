"""A test CA and S/MIME certificates made on the fly (RSA 2048, SAN rfc822Name)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_ca(name: str = "Test OCES CA"):
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(START)
            .not_valid_after(START + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca, address: str, days: int = 1000, start: datetime = START):
    ca_cert, ca_key = ca
    key = _key()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_pair(folder: Path, name: str, pair) -> tuple[Path, Path]:
    cert, key = pair
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.crt").write_bytes(pem(cert))
    (folder / f"{name}.key").write_bytes(key_pem(key))
    (folder / f"{name}.key").chmod(0o600)
    return folder / f"{name}.crt", folder / f"{name}.key"
