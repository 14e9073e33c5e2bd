"""What `python -m bench.load --auth` needs: an RSA key, its JWKS served on loopback, a token,
a certificate for the HTTPS listener, and the config that adds a JWT-protected route."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://issuer.bench.fastgw"
AUDIENCE = "bench-clients"
KID = "bench-key-1"


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 (a thread), with the bench key; counts fetches."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update({"kid": KID, "alg": "RS256", "use": "sig"})
        body = json.dumps({"keys": [public]}).encode()
        outer = self
        self.fetches = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "bench",
            "iat": now,
            "exp": now + 86400,
            "scope": "read",
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": KID})

    def close(self) -> None:
        self.httpd.shutdown()


def certificate(tmp: Path) -> tuple[Path, Path]:
    """A self-signed-CA certificate for 127.0.0.1 / localhost (trustme), as PEM files."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert_path, key_path = tmp / "bench-cert.pem", tmp / "bench-key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return cert_path, key_path


def auth_config(base: str, jwks_url: str, upstream_port: int, tls: tuple[Path, Path, int] | None) -> str:
    """The bench config plus ``ANY /jwt/{proxy+}`` (the same proxy behind a JWT authorizer) and,
    with ``tls``, an HTTPS listener."""
    routes = (
        '      - route: "ANY /jwt/{proxy+}"\n'
        f'        integration: {{type: HTTP_PROXY, uri: "http://127.0.0.1:{upstream_port}/{{proxy}}"}}\n'
        "        authorizer: jwt\n"
    )
    text = base.replace("    routes:\n", "    routes:\n" + routes, 1)
    text = text.replace(
        "    stages:",
        "    authorizers:\n"
        "      - name: jwt\n"
        "        type: JWT\n"
        f'        jwtConfiguration: {{issuer: "{ISSUER}", audience: ["{AUDIENCE}"],'
        f' jwks_uri: "{jwks_url}"}}\n'
        "    stages:",
        1,
    )
    if tls is not None:
        cert, key, port = tls
        text = text.replace(
            "gateway:\n",
            "gateway:\n"
            f'  tls: {{listen: "127.0.0.1:{port}", default: {{certificate: "{cert}", key: "{key}"}}}}\n',
            1,
        )
    return text
