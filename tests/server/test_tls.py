"""TLS termination and mutual TLS, end to end: a real gateway process, real TLS clients.

A trustme CA issues the server certificates (a default one, per-domain ones, a wildcard); a
second CA is the mutual-TLS truststore and issues client certificates; a third one issues a
client certificate the gateway must refuse. Requests go to an AWS_PROXY echo function, so what
the integration saw (X-Forwarded-Proto, requestContext.identity.clientCert) comes back.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import trustme
from helpers import HOST, GatewayFactory, RawConn, free_port, wait_for

from fastgw.config.compile import compile_config
from fastgw.config.load import ConfigError, load_config_text
from fastgw.server.tls import DONE, NEED_MORE, NOT_TLS, format_dn, parse_client_hello

H = "tests.pipeline.handlers"


# ---------------------------------------------------------------- certificates
class Pki:
    """The CAs and the certificate files of the tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = trustme.CA()
        self.client_ca = trustme.CA(organization_name="Client CA")
        self.rogue_ca = trustme.CA(organization_name="Rogue CA")
        self.ca_file = root / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.truststore = root / "truststore.pem"
        self.client_ca.cert_pem.write_to_path(str(self.truststore))
        self.files: dict[str, dict[str, str]] = {}
        for name in ("default.test", "a.test", "mtls.test", "*.wild.test"):
            self.files[name] = self.server_cert(name)
        self.client = self.client_cert(self.client_ca, "client-1", "client.example")
        self.rogue = self.client_cert(self.rogue_ca, "rogue", "rogue.example")

    def server_cert(self, name: str, tag: str = "") -> dict[str, str]:
        leaf = self.ca.issue_cert(name)
        stem = name.replace("*", "star") + tag
        cert, key = self.root / f"{stem}.crt", self.root / f"{stem}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        return {"certificate": str(cert), "key": str(key)}

    def client_cert(self, ca: trustme.CA, cn: str, san: str) -> tuple[str, str]:
        leaf = ca.issue_cert(san, common_name=cn, organization_name="Example Corp")
        cert, key = self.root / f"client-{cn}.crt", self.root / f"client-{cn}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        return str(cert), str(key)


def client_context(
    pki: Pki, cert: tuple[str, str] | None = None, check_hostname: bool = True
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    ctx.check_hostname = check_hostname
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


class SniConnection(http.client.HTTPSConnection):
    """An HTTPS connection to the gateway's TLS port with a chosen SNI name (and Host)."""

    def __init__(self, port: int, sni: str | None, context: ssl.SSLContext) -> None:
        super().__init__(HOST, port, context=context, timeout=5)
        self.sni = sni

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.sni)  # type: ignore[attr-defined]

    def get(self, path: str, host: str | None = None) -> tuple[int, dict[str, str], bytes]:
        self.request("GET", path, headers={"Host": host or self.sni or "gw.test"})
        resp = self.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body

    def peer_names(self) -> list[str]:
        assert self.sock is not None
        cert = self.sock.getpeercert()  # type: ignore[union-attr]
        return [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]


def https_get(
    port: int, sni: str | None, path: str, ctx: ssl.SSLContext, host: str | None = None
) -> tuple[int, dict[str, Any], list[str]]:
    conn = SniConnection(port, sni, ctx)
    try:
        status, _, body = conn.get(path, host)
        names = conn.peer_names()
    finally:
        conn.close()
    return status, (json.loads(body) if body.startswith(b"{") else {"raw": body}), names


def handshake_refused(port: int, sni: str, ctx: ssl.SSLContext) -> bool:
    """True if the connection ends without an HTTP response (TLS 1.3 reports a refused client
    certificate after the client's side of the handshake, at the first read)."""
    conn = SniConnection(port, sni, ctx)
    try:
        conn.get("/echo")
    except (ssl.SSLError, ConnectionError, http.client.RemoteDisconnected, OSError):
        return True
    finally:
        conn.close()
    return False


def gateway_config(pki: Pki, tls_port: int, files: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    files = files or pki.files
    return {
        "gateway": {
            "tls": {"listen": f"{HOST}:{tls_port}", "default": files["default.test"]},
            "limits": {"header_timeout": 2.0},
        },
        "functions": {"echo": {"handler": f"{H}:echo"}},
        "apis": [
            {
                "name": "rest",
                "id": "restapi001",
                "routes": [{"route": "GET /echo", "integration": {"type": "AWS_PROXY", "uri": "echo"}}],
                "stages": [{"name": "prod"}],
            },
            {
                "name": "http",
                "kind": "http",
                "id": "httpapi001",
                "routes": [
                    {"route": "GET /echo", "integration": {"type": "AWS_PROXY", "uri": "echo"}},
                    {
                        "route": "GET /v1",
                        "integration": {"type": "AWS_PROXY", "uri": "echo", "payloadFormatVersion": "1.0"},
                    },
                ],
                "stages": [{"name": "$default"}],
            },
        ],
        "domains": [
            {
                "name": "a.test",
                "mappings": [{"api": "rest", "stage": "prod"}],
                "certificate": files["a.test"],
            },
            {
                "name": "mtls.test",
                "mappings": [{"api": "rest", "stage": "prod"}],
                "certificate": files["mtls.test"],
                "mutualTls": {"truststore": str(pki.truststore)},
            },
            {
                "name": "mtls2.test",
                "mappings": [{"api": "http", "stage": "$default"}],
                "mutualTls": {"truststore": str(pki.truststore)},
            },
            {"name": "*.wild.test", "certificate": files["*.wild.test"]},
        ],
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_gw(module_gateway_factory: GatewayFactory, kernel_build: str, pki: Pki) -> Any:
    tls_port = free_port()
    gw = module_gateway_factory(
        gateway_config(pki, tls_port), workers=2, no_extensions=kernel_build == "python"
    )
    gw.tls_port = tls_port
    return gw


# ---------------------------------------------------------------- certificates by SNI
def test_certificate_by_sni(tls_gw: Any, pki: Pki) -> None:
    ctx = client_context(pki)
    status, data, names = https_get(tls_gw.tls_port, "a.test", "/echo", ctx)
    assert status == 200 and names == ["a.test"]
    headers = data["event"]["headers"]
    assert headers["X-Forwarded-Proto"] == "https"
    assert headers["X-Forwarded-Port"] == str(tls_gw.tls_port)
    assert "clientCert" not in data["event"]["requestContext"]["identity"]
    # Upper-case SNI, a wildcard name, an unknown name and no SNI at all.
    assert https_get(tls_gw.tls_port, "A.TEST", "/echo", client_context(pki, check_hostname=False))[2] == [
        "a.test"
    ]
    assert https_get(tls_gw.tls_port, "x.wild.test", "/", ctx)[2] == ["*.wild.test"]
    loose = client_context(pki, check_hostname=False)
    assert https_get(tls_gw.tls_port, "other.test", "/", loose)[2] == ["default.test"]
    assert https_get(tls_gw.tls_port, None, "/", loose, host="gw.test")[2] == ["default.test"]
    # An mTLS domain without a certificate of its own is served the default one.
    status, _, names = https_get(
        tls_gw.tls_port, "mtls2.test", "/echo", client_context(pki, pki.client, False)
    )
    assert status == 200 and names == ["default.test"]


def test_old_protocols_refused(tls_gw: Any, pki: Pki) -> None:
    ctx = client_context(pki)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    # (The client side does offer TLS 1.1 here; the event loop's TLS closes the connection on
    # the failed handshake without flushing OpenSSL's protocol_version alert.)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(tls_gw.tls_port, "a.test", "/echo", ctx)
    # TLS 1.2 with a suite outside the policy (no forward secrecy) is refused too.
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers("AES128-GCM-SHA256")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(tls_gw.tls_port, "a.test", "/echo", ctx)
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    conn = SniConnection(tls_gw.tls_port, "a.test", ctx)
    try:
        assert conn.get("/echo")[0] == 200
        assert conn.sock.version() == "TLSv1.2"  # type: ignore[union-attr]
        assert conn.sock.cipher()[0].startswith("ECDHE-")  # type: ignore[union-attr]
    finally:
        conn.close()


def test_plain_http_on_tls_port_is_closed(tls_gw: Any) -> None:
    with RawConn(tls_gw.tls_port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
        assert c.is_closed()


def test_slow_or_silent_clients_are_closed(tls_gw: Any) -> None:
    """No ClientHello, or half of one: closed once header_timeout (2 s here) is over."""
    for data in (b"", b"\x16\x03\x01\x02\x00\x01"):
        with socket.create_connection((HOST, tls_gw.tls_port), timeout=10) as s:
            if data:
                s.sendall(data)
            started = time.monotonic()
            try:
                assert s.recv(10) == b""
            except ConnectionResetError:
                pass
            assert 1.5 < time.monotonic() - started < 6


def test_keep_alive_over_tls(tls_gw: Any, pki: Pki) -> None:
    conn = SniConnection(tls_gw.tls_port, "a.test", client_context(pki))
    try:
        ids = set()
        for _ in range(5):
            status, headers, _ = conn.get("/echo")
            assert status == 200
            ids.add(headers["x-amzn-requestid"])
        sock = conn.sock
        assert conn.get("/echo")[0] == 200 and conn.sock is sock  # the same TLS connection
        assert len(ids) == 5
    finally:
        conn.close()


# ---------------------------------------------------------------- mutual TLS
def test_mtls_client_certificate_reaches_the_integration(tls_gw: Any, pki: Pki) -> None:
    status, data, names = https_get(tls_gw.tls_port, "mtls.test", "/echo", client_context(pki, pki.client))
    assert status == 200 and names == ["mtls.test"]
    cert = data["event"]["requestContext"]["identity"]["clientCert"]
    assert cert["subjectDN"].startswith("CN=client-1,")
    assert "O=Example Corp" in cert["subjectDN"]
    assert "O=Client CA" in cert["issuerDN"]
    assert cert["clientCertPem"] == Path(pki.client[0]).read_text()
    x509 = ssl._ssl._test_decode_cert(pki.client[0])  # type: ignore[attr-defined]
    assert cert["serialNumber"].replace(":", "") == x509["serialNumber"].lower().rjust(
        len(cert["serialNumber"].replace(":", "")), "0"
    )
    assert all(len(part) == 2 for part in cert["serialNumber"].split(":"))
    assert cert["validity"] == {"notBefore": x509["notBefore"], "notAfter": x509["notAfter"]}
    # An HTTP API (payload 1.0 event) on the second mTLS domain.
    status, data, _ = https_get(tls_gw.tls_port, "mtls2.test", "/v1", client_context(pki, pki.client, False))
    assert status == 200
    cert = data["event"]["requestContext"]["identity"]["clientCert"]
    assert cert["subjectDN"].startswith("CN=client-1,")


def test_mtls_refuses_missing_and_foreign_certificates(tls_gw: Any, pki: Pki) -> None:
    assert handshake_refused(tls_gw.tls_port, "mtls.test", client_context(pki))
    assert handshake_refused(tls_gw.tls_port, "mtls.test", client_context(pki, pki.rogue))
    # TLS 1.2 too (there the handshake itself fails).
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        https_get(tls_gw.tls_port, "mtls.test", "/echo", ctx)
    # A domain without mutual TLS on the same listener: no certificate asked, any accepted.
    assert https_get(tls_gw.tls_port, "a.test", "/echo", client_context(pki))[0] == 200
    assert https_get(tls_gw.tls_port, "a.test", "/echo", client_context(pki, pki.rogue))[0] == 200


def test_mtls_domain_needs_its_own_sni(tls_gw: Any, pki: Pki) -> None:
    """The Host of an mTLS domain on a connection not verified for it: 403, nothing forwarded."""
    status, data, _ = https_get(tls_gw.tls_port, "a.test", "/echo", client_context(pki), host="mtls.test")
    assert status == 403 and data == {"message": "Forbidden"}
    status, data, _ = https_get(
        tls_gw.tls_port, "a.test", "/echo", client_context(pki, pki.client), host="mtls.test"
    )
    assert status == 403
    status, _, _ = https_get(
        tls_gw.tls_port, None, "/echo", client_context(pki, pki.client, False), host="mtls.test"
    )
    assert status == 403
    # Plain HTTP cannot reach an mTLS domain either.
    with RawConn(tls_gw.port) as c:
        r = c.request("GET", "/echo", host="mtls.test")
    assert r.status == 403 and r.json() == {"message": "Forbidden"}
    # ... while its other domains still work over plain HTTP.
    with RawConn(tls_gw.port) as c:
        r = c.request("GET", "/echo", host="a.test")
    assert r.status == 200
    assert r.json()["event"]["headers"]["X-Forwarded-Proto"] == "http"


# ---------------------------------------------------------------- reload
def test_reload_new_certificate(gateway_factory: GatewayFactory, pki: Pki, tmp_path: Path) -> None:
    tls_port = free_port()
    gw = gateway_factory(gateway_config(pki, tls_port), workers=2)
    ctx = client_context(pki)
    old_conn = SniConnection(tls_port, "a.test", ctx)
    try:
        assert old_conn.get("/echo")[0] == 200
        old_cert = old_conn.sock.getpeercert()  # type: ignore[union-attr]
        files = dict(pki.files)
        files["a.test"] = pki.server_cert("a.test", tag="-new")
        new_serial = ssl._ssl._test_decode_cert(files["a.test"]["certificate"])["serialNumber"]  # type: ignore[attr-defined]
        assert new_serial != old_cert["serialNumber"]
        gw.write_config(gateway_config(pki, tls_port, files))
        gw.reload()

        def serial_now() -> str:
            conn = SniConnection(tls_port, "a.test", ctx)
            try:
                conn.get("/echo")
                return str(conn.sock.getpeercert()["serialNumber"])  # type: ignore[union-attr]
            finally:
                conn.close()

        # Both workers: every new connection soon gets the new certificate.
        assert wait_for(lambda: all(serial_now() == new_serial for _ in range(6)), 10.0), gw.stderr_text()
        # The connection opened before the reload keeps working, on its old session.
        status, _, _ = old_conn.get("/echo")
        assert status == 200
        assert old_conn.sock.getpeercert()["serialNumber"] == old_cert["serialNumber"]  # type: ignore[union-attr]
    finally:
        old_conn.close()
    # A reload with a missing key file is rejected and the old certificates keep serving.
    files["a.test"] = {"certificate": files["a.test"]["certificate"], "key": str(tmp_path / "missing.key")}
    gw.write_config(gateway_config(pki, tls_port, files))
    gw.reload()
    assert wait_for(lambda: "reload rejected" in gw.stderr_text(), 5.0)
    assert https_get(tls_port, "a.test", "/echo", ctx)[0] == 200


# ---------------------------------------------------------------- config validation
def test_config_errors_name_the_files(pki: Pki, tmp_path: Path) -> None:
    import yaml

    config = gateway_config(pki, 8443)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    config["gateway"]["tls"]["default"] = {
        "certificate": pki.files["a.test"]["certificate"],
        "key": pki.files["mtls.test"]["key"],
    }
    config["gateway"]["tls"]["ciphers"] = "NOPE-NOT-A-CIPHER"
    config["domains"][0]["certificate"] = {"certificate": str(tmp_path / "gone.crt"), "key": str(not_pem)}
    config["domains"][1]["mutualTls"] = {"truststore": str(not_pem)}
    with pytest.raises(ConfigError) as err:
        compile_config(load_config_text(yaml.safe_dump(config).encode()))
    got = {i.path: i.message for i in err.value.issues}
    assert "does not match" in got["$.gateway.tls.default.key"]
    assert "$.gateway.tls.ciphers" in got
    assert "gone.crt" in got["$.domains[0].certificate.certificate"]
    assert "no PEM private key" in got["$.domains[0].certificate.key"]
    assert "no PEM certificate" in got["$.domains[1].mutualTls.truststore"]
    # mTLS or a certificate without the HTTPS listener.
    config = gateway_config(pki, 8443)
    del config["gateway"]["tls"]
    with pytest.raises(ConfigError) as err:
        compile_config(load_config_text(yaml.safe_dump(config).encode()))
    paths = {i.path for i in err.value.issues}
    assert {"$.domains[0].certificate", "$.domains[1].mutualTls"} <= paths
    # A valid config compiles.
    compile_config(load_config_text(yaml.safe_dump(gateway_config(pki, 8443)).encode()))


# ---------------------------------------------------------------- units
def _client_hello(sni: str | None) -> bytes:
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    if sni is None:
        ctx.check_hostname = False
        obj = ctx.wrap_bio(incoming, outgoing)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_parse_client_hello() -> None:
    hello = _client_hello("Example.COM")
    assert parse_client_hello(hello) == (DONE, "example.com")
    for cut in range(0, len(hello), 37):
        assert parse_client_hello(hello[:cut])[0] == NEED_MORE
    assert parse_client_hello(_client_hello(None)) == (DONE, None)
    # The same handshake message split over two records.
    body = hello[5:]
    split = (
        hello[:3]
        + (100).to_bytes(2, "big")
        + body[:100]
        + hello[:3]
        + (len(body) - 100).to_bytes(2, "big")
        + body[100:]
    )
    assert parse_client_hello(split) == (DONE, "example.com")
    assert parse_client_hello(b"GET / HTTP/1.1\r\n")[0] == NOT_TLS
    assert parse_client_hello(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00")[0] == NOT_TLS


def test_format_dn() -> None:
    rdns = (
        (("countryName", "US"),),
        (("organizationName", "A, B"),),
        (("commonName", "x=y"), ("userId", "42")),
    )
    assert format_dn(rdns) == "CN=x\\=y+UID=42,O=A\\, B,C=US"


def test_sni_callback_refuses_a_context_of_another_name(pki: Pki) -> None:
    """If OpenSSL's reading of the SNI ever selected another context than the listener's peek
    did, the handshake is refused (the second parse must agree with the first)."""
    import yaml

    from fastgw.server.tls import build_contexts

    config = load_config_text(yaml.safe_dump(gateway_config(pki, 8443)).encode())
    contexts = build_contexts(config)
    assert contexts is not None
    mtls = contexts.select("mtls.test")
    assert mtls.verify_mode == ssl.CERT_REQUIRED
    assert contexts.select("a.test").verify_mode == ssl.CERT_NONE
    assert contexts.default.verify_mode == ssl.CERT_NONE
    assert contexts.select("x.wild.test") is contexts.select("y.wild.test") is not contexts.default
    assert contexts.select("a.b.wild.test") is contexts.default  # a wildcard covers one label
    assert contexts._check_sni(None, "MTLS.test.", mtls) is None  # type: ignore[arg-type]
    refused = contexts._check_sni(None, "a.test", mtls)  # type: ignore[arg-type]
    assert refused == ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
    assert contexts._check_sni(None, None, mtls) == ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE  # type: ignore[arg-type]
