"""TLS: certificates from a throw-away CA (trustme), scheme https in the scope."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from tests import apps
from tests.utils import run_server
from tests.worker.helpers import capture_logs, cli, serve_config

PASSWORD = "correct horse"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cert_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Server certificate and keys: plain and password-protected."""
    directory = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile = directory / "cert.pem"
    keyfile = directory / "key.pem"
    encrypted_keyfile = directory / "key-encrypted.pem"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    encrypted_keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode()),
        )
    )
    return {"cert": str(certfile), "key": str(keyfile), "encrypted_key": str(encrypted_keyfile)}


@pytest.fixture
def trusted(ca: trustme.CA) -> ssl.SSLContext:
    """A client context trusting the test CA (close clients before the server stops:
    an idle TLS connection is kept until its keep-alive timeout)."""
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def test_https_scope(
    cert_files: dict[str, str], trusted: ssl.SSLContext, http_backend: str
) -> None:
    with (
        run_server(
            apps.scope_json,
            http=http_backend,
            ssl_certfile=cert_files["cert"],
            ssl_keyfile=cert_files["key"],
        ) as running,
        httpx.Client(verify=trusted) as client,
    ):
        response = client.get(f"https://127.0.0.1:{running.port}/secure?x=1")
    assert response.status_code == 200
    scope = response.json()
    assert scope["scheme"] == "https"
    assert scope["path"] == "/secure"


def test_plain_http_to_tls_port_gets_no_response(
    cert_files: dict[str, str], http_backend: str
) -> None:
    with (
        run_server(
            apps.hello,
            http=http_backend,
            ssl_certfile=cert_files["cert"],
            ssl_keyfile=cert_files["key"],
        ) as running,
        pytest.raises(httpx.TransportError),
    ):
        httpx.get(f"http://127.0.0.1:{running.port}/", timeout=5)


def test_keyfile_password_and_https_log_line(
    cert_files: dict[str, str], trusted: ssl.SSLContext, http_backend: str
) -> None:
    with (
        capture_logs() as logs,
        serve_config(
            apps.hello,
            port=0,
            http=http_backend,
            ssl_certfile=cert_files["cert"],
            ssl_keyfile=cert_files["encrypted_key"],
            ssl_keyfile_password=PASSWORD,
        ),
    ):
        url = logs.running_url()
        assert url.startswith("https://127.0.0.1:")
        with httpx.Client(verify=trusted) as client:
            assert client.get(url).text == "Hello, world!"


def test_missing_certificate_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with cli("tests.apps:hello", "--port", "0", "--ssl-certfile", str(missing)) as process:
        code = process.wait()
    assert code != 0
    assert "Traceback" not in process.output
    assert "Tricorn running on" not in process.output
    assert str(missing) in process.output or "ssl" in process.output.lower()
