"""The publish API's settings: ``HERALD_API_*``, plus the names every publisher shares.

Built once at start-up by :meth:`ApiSettings.from_env` (herald_contract.config's rules). The
Redis URL, key prefix, history retention and namespace file are the shared ``HERALD_*`` names
the fleet and the Q&A core read too (:class:`herald_contract.config.BusSettings`), so a
publication made through the API is made with the same retention as any other.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import BeforeValidator, Field, field_validator

from herald_contract.config import BusSettings, PositiveInt

KEY_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
MIN_KEY_LENGTH = 16
DEFAULT_PORT = 8090


def _key_list(value: object) -> object:
    """``name:key,name:key`` (commas or newlines between entries) as (name, key) pairs."""
    if not isinstance(value, str):
        return value
    pairs = []
    for entry in re.split(r"[,\n]", value):
        entry = entry.strip()
        if not entry:
            continue
        name, colon, key = entry.partition(":")
        if not colon:
            raise ValueError(
                "each entry is name:key (a name for logs and metrics, a colon, the key)"
            )
        pairs.append((name.strip(), key.strip()))
    return tuple(pairs)


ApiKeyList = Annotated[tuple[tuple[str, str], ...], BeforeValidator(_key_list)]


class ApiSettings(BusSettings):
    """What ``python -m publish_api`` reads (docs/configuration.md, "Publish API")."""

    ENV_PREFIX: ClassVar[str] = "HERALD_API_"

    host: str = "127.0.0.1"
    """Loopback by default: the publish API is for backends, never for browsers."""
    port: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_PORT
    keys: ApiKeyList = ()
    """Every key accepted, each with a name (logs, metrics); two at once while rotating."""
    max_body_bytes: PositiveInt = 1024 * 1024
    """A request body above this is answered 413 before it is parsed."""
    socket_timeout_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 5.0
    """How long one Redis call may take before the publication is answered 503."""

    @field_validator("keys")
    @classmethod
    def _keys_are_usable(cls, value: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        names = set()
        for name, key in value:
            if KEY_NAME.fullmatch(name) is None:
                raise ValueError(f"key name {name!r} is not 1-64 of A-Z a-z 0-9 _ . -")
            if name in names:
                raise ValueError(f"key name {name!r} is given twice")
            names.add(name)
            if len(key) < MIN_KEY_LENGTH or not key.isprintable() or " " in key:
                raise ValueError(
                    f"key {name!r} must be at least {MIN_KEY_LENGTH} printable characters"
                    " without spaces"
                )
        return value
