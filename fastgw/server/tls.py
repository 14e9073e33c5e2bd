"""TLS termination: server contexts per SNI name, mutual TLS, and the HTTPS listener.

Cipher and protocol policy (AWS's ``TLS_1_2`` security policy, tightened):

* TLS 1.2 and 1.3 only (``gateway.tls.min_version``, default ``TLSv1.2``; SSLv3, TLS 1.0 and 1.1
  are refused during the handshake).
* TLS 1.2 suites: ``gateway.tls.ciphers``, an OpenSSL cipher string, by default
  ``ECDHE+AESGCM:ECDHE+CHACHA20``: forward-secret ECDHE key exchange with AEAD ciphers only (no
  CBC, no RSA key exchange, no SHA-1 MACs); the server's order wins. TLS 1.3 suites are
  OpenSSL's (all AEAD, all forward-secret).
* No TLS compression (CRIME), no renegotiation (client-initiated renegotiation is a DoS lever),
  a fresh ECDHE key per handshake, ALPN ``http/1.1`` only.

Certificate selection and mutual TLS
------------------------------------
Each custom domain with a ``certificate`` or ``mutualTls`` gets its own ``SSLContext``: its
certificate (or the default one) and, for mutual TLS, ``CERT_REQUIRED`` with only that domain's
truststore. Every other name gets the default context (no client certificate requested).

The context is chosen *before* OpenSSL sees the connection. OpenSSL's usual way, switching
``SSLObject.context`` in an SNI callback, swaps the certificate and the CA store but not the
verify mode, which stays the listener's: a listener that did not ask for client certificates
would never ask for the mTLS domain, and one that asked everybody would refuse clients that
send a certificate to a domain without mTLS. So the listener accepts the TCP connection itself,
peeks (``MSG_PEEK``, nothing consumed) at the ClientHello, reads its ``server_name``, and hands
the socket to the event loop's TLS with the context of that name. An SNI callback on every
context then checks that the name OpenSSL parsed selects the very same context; if our parser
and OpenSSL's ever disagree, the handshake fails (one parse, one truth). Each context has its
own session cache and ticket keys, so a session made for one name cannot be resumed under a
name with stricter (mutual TLS) requirements.

Names are matched lower-cased (a trailing dot dropped), exactly; a domain named
``*.example.com`` with a certificate serves ``a.example.com`` (one label) when no exact name
matches.

A verified TLS connection only proves the client for the SNI name it used. The request's Host
picks the API, so a request whose Host is a mutual-TLS domain must have arrived on a connection
whose SNI was that domain (``mtls_guard``): on plain HTTP, without SNI or under another name it
gets 403 Forbidden, as AWS answers on a name mismatch.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
from collections.abc import Callable
from typing import Any

from fastgw.config.load import ConfigIssue
from fastgw.config.model import Domain, GatewayConfig, TlsCertificate, TlsSettings
from fastgw.server import replies

log = logging.getLogger("fastgw.tls")

#: The reply to a request for a mutual-TLS domain that did not come over a connection
#: verified for that domain (AWS: 403 ForbiddenException).
FORBIDDEN = replies.aws_error(403, "Forbidden", "ForbiddenException")

#: Largest ClientHello accepted (records included); real ones are under 2 KiB (a few KiB with
#: post-quantum key shares).
MAX_CLIENT_HELLO = 32 * 1024
#: Connections accepted but not yet handed to the event loop's TLS (peek and handshake) per worker.
MAX_PENDING_HANDSHAKES = 4096

_PROTOCOLS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


# ---------------------------------------------------------------------- contexts
def normalize_name(name: str | None) -> str | None:
    """An SNI / domain name as matched: lower case, no trailing dot (None stays None)."""
    if not name:
        return None
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


class TlsContexts:
    """The server contexts of one config: a default one and one per custom domain name."""

    def __init__(self, settings: TlsSettings, domains: list[Domain]) -> None:
        self.settings = settings
        self.default = self._context(settings.default, None)
        self.by_name: dict[str, ssl.SSLContext] = {}
        self.wildcards: dict[str, ssl.SSLContext] = {}
        #: Names (lower case) whose clients must present a certificate.
        self.mtls: frozenset[str] = frozenset(
            n for d in domains if d.mutualTls is not None and (n := normalize_name(d.name))
        )
        for domain in domains:
            name = normalize_name(domain.name)
            if name is None or (domain.certificate is None and domain.mutualTls is None):
                continue
            cert = domain.certificate or settings.default
            trust = domain.mutualTls.truststore if domain.mutualTls is not None else None
            ctx = self._context(cert, trust)
            if name.startswith("*."):
                self.wildcards[name[2:]] = ctx
            else:
                self.by_name[name] = ctx

    def _context(self, cert: TlsCertificate, truststore: str | None) -> ssl.SSLContext:
        settings = self.settings
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _PROTOCOLS[settings.min_version]
        ctx.set_ciphers(settings.ciphers)
        ctx.options |= (
            ssl.OP_NO_COMPRESSION
            | ssl.OP_NO_RENEGOTIATION
            | ssl.OP_CIPHER_SERVER_PREFERENCE
            | ssl.OP_SINGLE_ECDH_USE
        )
        ctx.load_cert_chain(cert.certificate, cert.key)
        if truststore is not None:
            ctx.load_verify_locations(cafile=truststore)
            ctx.verify_mode = ssl.CERT_REQUIRED
        else:
            ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = self._check_sni
        return ctx

    def select(self, server_name: str | None) -> ssl.SSLContext:
        """The context for a (normalised) SNI name; the default one for None or an unknown name."""
        if server_name is None:
            return self.default
        ctx = self.by_name.get(server_name)
        if ctx is not None:
            return ctx
        if self.wildcards:
            _, dot, parent = server_name.partition(".")
            if dot:
                ctx = self.wildcards.get(parent)
                if ctx is not None:
                    return ctx
        return self.default

    def _check_sni(self, ssl_obj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> int | None:
        """OpenSSL's view of the name must select the context the listener chose from its own."""
        if self.select(normalize_name(server_name)) is not ctx:
            log.warning("SNI disagreement: handshake refused", extra={"sni": server_name})
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        return None


def build_contexts(config: GatewayConfig) -> TlsContexts | None:
    """The contexts of a config (None without ``gateway.tls``); raises OSError / ssl.SSLError."""
    if config.gateway.tls is None:
        return None
    return TlsContexts(config.gateway.tls, config.domains)


# ---------------------------------------------------------------------- config checks
def check_tls(config: GatewayConfig, issues: list[ConfigIssue]) -> None:
    """Validate ``gateway.tls`` and the domains' certificates and truststores (files, PEM, keys)."""
    tls = config.gateway.tls
    if tls is not None:
        host, _, port = tls.listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            issues.append(ConfigIssue("$.gateway.tls.listen", f"expected HOST:PORT, got {tls.listen!r}"))
        elif tls.listen == config.gateway.listen:
            issues.append(ConfigIssue("$.gateway.tls.listen", "must differ from gateway.listen"))
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(tls.ciphers)
        except ssl.SSLError:
            issues.append(ConfigIssue("$.gateway.tls.ciphers", f"no cipher matches {tls.ciphers!r}"))
        _check_certificate(tls.default, "$.gateway.tls.default", issues)
    for i, domain in enumerate(config.domains):
        path = f"$.domains[{i}]"
        if domain.certificate is not None:
            if tls is None:
                issues.append(ConfigIssue(f"{path}.certificate", "needs gateway.tls (the HTTPS listener)"))
            _check_certificate(domain.certificate, f"{path}.certificate", issues)
        if domain.mutualTls is not None:
            if tls is None:
                issues.append(ConfigIssue(f"{path}.mutualTls", "needs gateway.tls (the HTTPS listener)"))
            _check_truststore(domain.mutualTls.truststore, f"{path}.mutualTls.truststore", issues)


def _read_pem(file: str, path: str, marker: str, what: str, issues: list[ConfigIssue]) -> bool:
    try:
        with open(file, "rb") as f:
            data = f.read(4 << 20)
    except OSError as ex:
        issues.append(ConfigIssue(path, f"cannot read {file}: {ex.strerror}"))
        return False
    if not re.search(rb"-----BEGIN [A-Z ]*" + marker.encode() + rb"-----", data):
        issues.append(ConfigIssue(path, f"{file} holds no PEM {what}"))
        return False
    return True


def _check_certificate(cert: TlsCertificate, path: str, issues: list[ConfigIssue]) -> None:
    ok = _read_pem(cert.certificate, f"{path}.certificate", "CERTIFICATE", "certificate", issues)
    ok = _read_pem(cert.key, f"{path}.key", "PRIVATE KEY", "private key", issues) and ok
    if not ok:
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert.certificate, cert.key)
    except ssl.SSLError as ex:
        if "KEY_VALUES_MISMATCH" in str(ex) or "key values mismatch" in str(ex):
            issues.append(ConfigIssue(f"{path}.key", f"{cert.key} does not match {cert.certificate}"))
        else:
            issues.append(ConfigIssue(path, f"cannot load {cert.certificate} / {cert.key}: {ex.reason}"))
    except OSError as ex:
        issues.append(ConfigIssue(path, f"cannot load {cert.certificate} / {cert.key}: {ex.strerror}"))


def _check_truststore(file: str, path: str, issues: list[ConfigIssue]) -> None:
    if not _read_pem(file, path, "CERTIFICATE", "certificate", issues):
        return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_verify_locations(cafile=file)
    except (ssl.SSLError, OSError) as ex:
        issues.append(ConfigIssue(path, f"cannot load {file}: {ex}"))
        return
    if not ctx.cert_store_stats().get("x509"):
        issues.append(ConfigIssue(path, f"{file} holds no CA certificate"))


# ---------------------------------------------------------------------- client certificate
_DN_NAMES = {
    "commonName": "CN",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
    "emailAddress": "EMAILADDRESS",
    "serialNumber": "SERIALNUMBER",
    "givenName": "GIVENNAME",
    "surname": "SURNAME",
    "title": "T",
}


def _dn_escape(value: str) -> str:
    out = re.sub(r'([,+"\\<>;=])', r"\\\1", value)
    if out[:1] in (" ", "#"):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out


def format_dn(rdns: Any) -> str:
    """A DN from ``getpeercert()``'s RDN tuples as RFC 4514 text (most specific first: CN=...)."""
    parts = []
    for rdn in reversed(rdns or ()):
        parts.append("+".join(f"{_DN_NAMES.get(k, k)}={_dn_escape(v)}" for k, v in rdn))
    return ",".join(parts)


def client_cert_of(ssl_obj: Any) -> dict[str, Any] | None:
    """The verified client certificate as AWS's ``clientCert`` (None without one)."""
    try:
        info = ssl_obj.getpeercert()
        der = ssl_obj.getpeercert(binary_form=True)
    except (ValueError, ssl.SSLError):  # pragma: no cover - the handshake is done
        return None
    if not info or not der:
        return None
    serial = info.get("serialNumber", "").lower()
    if len(serial) % 2:
        serial = "0" + serial
    return {
        "clientCertPem": ssl.DER_cert_to_PEM_cert(der),
        "subjectDN": format_dn(info.get("subject")),
        "issuerDN": format_dn(info.get("issuer")),
        "serialNumber": ":".join(serial[i : i + 2] for i in range(0, len(serial), 2)),
        "validity": {"notBefore": info.get("notBefore"), "notAfter": info.get("notAfter")},
    }


# ---------------------------------------------------------------------- ClientHello
NEED_MORE = 0
DONE = 1
NOT_TLS = -1


def parse_client_hello(data: bytes) -> tuple[int, str | None]:
    """(DONE, SNI name or None) once the whole ClientHello is in ``data``; (NEED_MORE, None)
    before; (NOT_TLS, None) if the bytes are not a TLS ClientHello."""
    hs = bytearray()
    pos = 0
    while True:
        if len(data) < pos + 5:
            return NEED_MORE, None
        rlen = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if data[pos] != 22 or data[pos + 1] != 3 or rlen == 0 or rlen > 16384:
            return NOT_TLS, None
        if len(data) < pos + 5 + rlen:
            return (NEED_MORE, None) if pos + 5 + rlen <= MAX_CLIENT_HELLO else (NOT_TLS, None)
        hs += data[pos + 5 : pos + 5 + rlen]
        pos += 5 + rlen
        if len(hs) >= 4:
            if hs[0] != 1:
                return NOT_TLS, None
            hlen = int.from_bytes(hs[1:4], "big")
            if hlen + 4 > MAX_CLIENT_HELLO:
                return NOT_TLS, None
            if len(hs) >= 4 + hlen:
                try:
                    return DONE, _server_name(bytes(hs[4 : 4 + hlen]))
                except (IndexError, ValueError):
                    return NOT_TLS, None


def _server_name(body: bytes) -> str | None:
    pos = 2 + 32  # legacy_version, random
    pos += 1 + body[pos]  # session id
    pos += 2 + int.from_bytes(body[pos : pos + 2], "big")  # cipher suites
    pos += 1 + body[pos]  # compression methods
    if pos >= len(body):
        return None  # no extensions
    end = pos + 2 + int.from_bytes(body[pos : pos + 2], "big")
    if end > len(body):
        raise ValueError("extensions overrun")
    pos += 2
    while pos + 4 <= end:
        etype = int.from_bytes(body[pos : pos + 2], "big")
        elen = int.from_bytes(body[pos + 2 : pos + 4], "big")
        pos += 4
        if etype == 0:
            ext = body[pos : pos + elen]
            # server_name_list: one host_name entry (OpenSSL accepts nothing else).
            if len(ext) < 5 or ext[2] != 0:
                raise ValueError("bad server_name")
            nlen = int.from_bytes(ext[3:5], "big")
            name = ext[5 : 5 + nlen]
            if len(name) != nlen or b"\x00" in name:
                raise ValueError("bad server_name")
            return normalize_name(name.decode("ascii"))
        pos += elen
    return None


async def peek_server_name(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> str | None:
    """Wait for a whole ClientHello on ``sock`` without consuming it; its SNI name (or None).

    Raises ConnectionError if the peer closes or sends something that is not TLS.
    """
    fd = sock.fileno()
    delay = 0.002
    while True:
        try:
            data = sock.recv(MAX_CLIENT_HELLO, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            data = None
        if data is not None:
            if not data:
                raise ConnectionResetError("closed before the ClientHello")
            state, name = parse_client_hello(data)
            if state == DONE:
                return name
            if state == NOT_TLS:
                raise ConnectionAbortedError("not a TLS ClientHello")
            # Part of the hello is in: the socket stays readable, so poll (rare: one segment
            # usually carries the whole hello).
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            continue
        fut: asyncio.Future[None] = loop.create_future()

        def ready(fut: asyncio.Future[None] = fut) -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await fut
        finally:
            loop.remove_reader(fd)


# ---------------------------------------------------------------------- listener
class TlsListener:
    """Accepts HTTPS connections on one listening socket, one context per SNI name.

    ``handshake_timeout`` (the worker passes ``gateway.limits.header_timeout``) bounds the wait
    for the ClientHello and the handshake together; the request head then has its own
    ``header_timeout``. At most ``MAX_PENDING_HANDSHAKES`` connections wait at once per worker.

    ``make_protocol(name)`` builds the connection's protocol (``name``: the normalised SNI
    name, "" without one). ``contexts`` may be replaced at any time (config reload): new
    connections use the new contexts, established ones keep theirs.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        contexts: TlsContexts,
        make_protocol: Callable[[str], asyncio.Protocol],
        handshake_timeout: float,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.contexts = contexts
        self.make_protocol = make_protocol
        self.handshake_timeout = handshake_timeout
        self.pending: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None
        self.closed = False

    def start(self) -> None:
        self.task = self.loop.create_task(self._accept_loop())

    def close(self) -> None:
        """Stop accepting; connections still in their handshake are dropped."""
        if self.closed:
            return
        self.closed = True
        if self.task is not None:
            self.task.cancel()
        for task in list(self.pending):
            task.cancel()
        self.sock.close()

    async def _accept_loop(self) -> None:
        loop = self.loop
        while not self.closed:
            try:
                conn, _ = await loop.sock_accept(self.sock)  # type: ignore[arg-type]
            except asyncio.CancelledError:
                raise
            except OSError as ex:
                if self.closed:
                    return
                log.error("HTTPS accept failed", extra={"error": str(ex)})
                await asyncio.sleep(0.1)  # EMFILE and the like: back off, do not spin
                continue
            if len(self.pending) >= MAX_PENDING_HANDSHAKES:
                conn.close()
                continue
            task = loop.create_task(self._serve(conn))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    async def _serve(self, conn: socket.socket) -> None:
        conn.setblocking(False)
        handed = False
        # One deadline for the ClientHello and the whole handshake.
        deadline = self.loop.time() + self.handshake_timeout
        try:
            try:
                name = await asyncio.wait_for(peek_server_name(self.loop, conn), self.handshake_timeout)
            except (TimeoutError, OSError):
                return
            ctx = self.contexts.select(name)
            sni = name or ""

            def factory() -> asyncio.Protocol:
                return self.make_protocol(sni)

            handed = True
            await self.loop.connect_accepted_socket(  # type: ignore[call-overload]
                factory, conn, ssl=ctx, ssl_handshake_timeout=max(deadline - self.loop.time(), 0.1)
            )
        except Exception as ex:  # failed handshakes (SSLError, resets, timeouts) end here
            log.debug("TLS handshake failed", extra={"error": str(ex)})
        finally:
            if not handed:
                conn.close()


__all__ = [
    "FORBIDDEN",
    "TlsContexts",
    "TlsListener",
    "build_contexts",
    "check_tls",
    "client_cert_of",
    "format_dn",
    "normalize_name",
    "parse_client_hello",
    "peek_server_name",
]
