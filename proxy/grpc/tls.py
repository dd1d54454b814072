"""TLS on the Ray Client listener, for load balancers that speak HTTP/2 to a backend only over TLS
(GKE Ingress: `cloud.google.com/app-protocols: '{"client": "HTTP2"}'`). Google's load balancer does
not verify a backend's certificate, so a throwaway self-signed one, made in memory at start-up, is
enough there; a certificate from files serves callers that do verify."""

from __future__ import annotations

import datetime

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ..settings.credentials import ClientTls


def self_signed(name: str = "ray-iap-proxy") -> tuple[bytes, bytes]:
    """(key PEM, certificate PEM): P-256, valid from an hour ago for a year, never written to disk."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def server_credentials(tls: ClientTls | None) -> grpc.ServerCredentials | None:
    """What the listener's port is bound with: None for plaintext (h2c)."""
    if tls is None:
        return None
    if tls.cert_file is not None and tls.key_file is not None:
        key, cert = tls.key_file.read_bytes(), tls.cert_file.read_bytes()
    else:
        key, cert = self_signed()
    return grpc.ssl_server_credentials([(key, cert)])
