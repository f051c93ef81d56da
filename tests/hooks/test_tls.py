"""TLS over real sockets: a certificate that does not verify fails at once and says why."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airflow_provider_cfimages.exceptions import CloudflareImagesAPIError
from airflow_provider_cfimages.hooks.images import CloudflareImagesHook
from tests.conftest import TEST_ACCOUNT, TEST_TOKEN, connection_json


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Stats(BaseHTTPRequestHandler):
    served: list[str] = []

    def do_GET(self) -> None:
        type(self).served.append(self.path)
        body = b'{"success": true, "errors": [], "result": {"count": {"current": 1}}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def https_url(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 whose certificate no CA bundle trusts."""
    cert_path, key_path = self_signed_certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    _Stats.served = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stats)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/client/v4"
    finally:
        server.shutdown()
        server.server_close()


def test_an_untrusted_certificate_fails_at_once_and_says_why(
    https_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", connection_json(host=https_url))
    hook = CloudflareImagesHook()

    with pytest.raises(CloudflareImagesAPIError, match="certificate") as raised:
        hook.get_stats()

    assert re.search("self[- ]signed certificate", str(raised.value))  # OpenSSL 3 / 1.1
    assert "REQUESTS_CA_BUNDLE" in str(raised.value)
    assert TEST_TOKEN not in str(raised.value)
    assert not raised.value.transient  # so a sensor fails instead of poking until timeout
    assert hook.transport.requests_sent == 1  # not retried
    assert _Stats.served == []


def test_the_certificate_is_trusted_through_a_ca_bundle(
    https_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The fixture wrote its certificate here: trusting it is what the error advises.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "cert.pem"))
    monkeypatch.setenv("AIRFLOW_CONN_CLOUDFLARE_IMAGES_DEFAULT", connection_json(host=https_url))

    stats = CloudflareImagesHook().get_stats()

    assert stats == {"count": {"current": 1}}
    assert _Stats.served == [f"/client/v4/accounts/{TEST_ACCOUNT}/images/v1/stats"]
