"""Throw-away certificate authorities and certificates for TLS tests (EC P-256, PEM files)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertFiles:
    """A PEM certificate and its unencrypted PEM key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class PkiFiles:
    """One CA with a server certificate for 127.0.0.1/localhost and a client certificate,
    plus an unrelated CA (``other_ca``) that signed nothing the broker uses."""

    ca: Path
    server: CertFiles
    client: CertFiles
    other_ca: Path
    wrong_host_server: CertFiles  # signed by ``ca`` but only valid for broker.invalid


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    # mosquitto starts as root and drops to its own user: let it read what it needs.
    os.chmod(path, 0o644)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(path, 0o644)


def _make_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _make_leaf(
    common_name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    server: bool,
    hosts: tuple[str, ...] = (),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_test_pki(directory: Path) -> PkiFiles:
    """Write a CA, server and client certificates into ``directory`` (made world-readable)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    ca_cert, ca_key = _make_ca("EventDesk test CA")
    other_cert, _ = _make_ca("Unrelated test CA")
    server_cert, server_key = _make_leaf(
        "127.0.0.1", ca_cert, ca_key, server=True, hosts=("127.0.0.1", "localhost")
    )
    wrong_cert, wrong_key = _make_leaf(
        "broker.invalid", ca_cert, ca_key, server=True, hosts=("broker.invalid",)
    )
    client_cert, client_key = _make_leaf("eventdesk-test-client", ca_cert, ca_key, server=False)

    pki = PkiFiles(
        ca=directory / "ca.pem",
        server=CertFiles(directory / "server.pem", directory / "server.key"),
        client=CertFiles(directory / "client.pem", directory / "client.key"),
        other_ca=directory / "other-ca.pem",
        wrong_host_server=CertFiles(directory / "wrong-host.pem", directory / "wrong-host.key"),
    )
    _write_cert(ca_cert, pki.ca)
    _write_cert(other_cert, pki.other_ca)
    _write_cert(server_cert, pki.server.cert)
    _write_key(server_key, pki.server.key)
    _write_cert(wrong_cert, pki.wrong_host_server.cert)
    _write_key(wrong_key, pki.wrong_host_server.key)
    _write_cert(client_cert, pki.client.cert)
    _write_key(client_key, pki.client.key)
    return pki
