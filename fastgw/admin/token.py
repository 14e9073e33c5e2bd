"""The admin API's bearer token: where it comes from, and when a listener may be exposed.

Order (the first that is set wins):

1. the ``FASTGW_ADMIN_TOKEN`` environment variable;
2. ``gateway.admin.token_file`` (its content, stripped; unreadable or empty is an error);
3. a generated token (``secrets.token_urlsafe(32)``) in ``fastgw-admin.token`` next to the state
   file, created with mode 0600. A token already generated there is reused, so a restart, the
   admin process and the CLI agree on it; delete the file to get a new one.

The first two are *explicit*. A listener on a non-loopback address needs an explicit token
(``check_listen``): a generated one sits in a file nobody chose to distribute.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat

from fastgw.config.model import AdminSettings, GatewayConfig, StateSettings

TOKEN_ENV = "FASTGW_ADMIN_TOKEN"
GENERATED_TOKEN_NAME = "fastgw-admin.token"


def generated_token_path(state_path: str) -> str:
    """Where the generated token lives: beside the state file."""
    return os.path.join(os.path.dirname(os.path.abspath(state_path)), GENERATED_TOKEN_NAME)


def _env_token() -> str | None:
    value = os.environ.get(TOKEN_ENV, "").strip()
    return value or None


def _read_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as ex:
        raise ValueError(f"cannot read the admin token file {path}: {ex.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"the admin token file {path} is not UTF-8 text") from None
    if not token:
        raise ValueError(f"the admin token file {path} is empty")
    return token


def _reuse_generated(path: str) -> str | None:
    """A token generated earlier, if the file is ours, private (no group/other bits) and non-empty."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        return None
    try:
        return _read_token_file(path)
    except ValueError:
        return None


def token_is_explicit(settings: AdminSettings) -> bool:
    """True when the token comes from the environment or ``token_file`` (not generated)."""
    return _env_token() is not None or bool(settings.token_file)


def resolve_token(settings: AdminSettings, state_path: str) -> tuple[str, str | None]:
    """The admin token and, when it was generated, the file it is in (for the caller to log).

    Raises ``ValueError`` if ``token_file`` is set but unreadable or empty.
    """
    env = _env_token()
    if env is not None:
        return env, None
    if settings.token_file:
        return _read_token_file(settings.token_file), None
    path = generated_token_path(state_path)
    existing = _reuse_generated(path)
    if existing is not None:
        return existing, path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the file may have existed with wider permissions
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    return token, path


def listen_host(listen: str) -> str:
    host, _, _ = listen.rpartition(":")
    return host.strip("[]")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve anywhere


def check_listen(settings: AdminSettings, explicit: bool) -> None:
    """Refuse (``ValueError``) a non-loopback admin listener whose token was not set explicitly."""
    host = listen_host(settings.listen)
    if not is_loopback(host) and not explicit:
        raise ValueError(
            f"gateway.admin.listen {settings.listen!r} is not a loopback address: set the admin token "
            f"explicitly ({TOKEN_ENV} or gateway.admin.token_file) before exposing the admin API"
        )


def read_token_for_cli(config: GatewayConfig | None) -> str | None:
    """The token the CLI sends: the environment, then ``token_file``, then the generated file."""
    env = _env_token()
    if env is not None:
        return env
    admin = config.gateway.admin if config is not None else AdminSettings()
    state = config.gateway.state if config is not None else StateSettings()
    if admin.token_file:
        return _read_token_file(admin.token_file)
    try:
        return _read_token_file(generated_token_path(state.path))
    except ValueError:
        return None
