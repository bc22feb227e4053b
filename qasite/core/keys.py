"""Secrets at start-up: configured in production, generated once into ``data_dir`` in development.

In development the first run writes ``data_dir/socket-token-key.pem`` (an Ed25519 private
key), ``socket-token-key.pub.pem`` (its public key: point the socket fleet's
``HERALD_JWT_PUBLIC_KEY_FILE`` at it) and ``access-token.secret``; later runs read them back,
so tokens survive a restart. Files are created with mode 0600 (the public key 0644).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from qasite.core.settings import Settings, SettingsError

PRIVATE_KEY_FILE = "socket-token-key.pem"
PUBLIC_KEY_FILE = "socket-token-key.pub.pem"
ACCESS_SECRET_FILE = "access-token.secret"  # noqa: S105  # a file name


def _write(path: Path, content: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(content)


def public_key_of(private_key_pem: str) -> str:
    key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _dev_key_pair(data_dir: Path) -> tuple[str, str]:
    private_path, public_path = data_dir / PRIVATE_KEY_FILE, data_dir / PUBLIC_KEY_FILE
    if not private_path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        _write(private_path, pem, 0o600)
    private_pem = private_path.read_text(encoding="ascii")
    public_pem = public_key_of(private_pem)
    if not public_path.exists() or public_path.read_text(encoding="ascii") != public_pem:
        public_path.write_text(public_pem, encoding="ascii")
    return private_pem, public_pem


def _dev_secret(data_dir: Path) -> str:
    path = data_dir / ACCESS_SECRET_FILE
    if not path.exists():
        _write(path, secrets.token_urlsafe(48), 0o600)
    return path.read_text(encoding="ascii").strip()


def with_secrets(settings: Settings) -> Settings:
    """*settings* with every secret filled in (development: generated or read from data_dir).

    Raises :class:`SettingsError` when a configured private key cannot be read.
    """
    changes: dict[str, str] = {}
    private_pem = settings.socket_private_key_pem
    if settings.is_development and (private_pem is None or settings.access_token_secret is None):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if private_pem is None and settings.is_development:
        private_pem, changes["socket_public_key_pem"] = _dev_key_pair(settings.data_dir)
        changes["socket_private_key_pem"] = private_pem
    elif private_pem is not None and settings.socket_public_key_pem is None:
        try:
            changes["socket_public_key_pem"] = public_key_of(private_pem)
        except (ValueError, TypeError) as exc:
            raise SettingsError("socket_private_key_pem", f"not a PEM private key: {exc}") from None
    if settings.access_token_secret is None and settings.is_development:
        changes["access_token_secret"] = _dev_secret(settings.data_dir)
    return settings.replace(**changes) if changes else settings
