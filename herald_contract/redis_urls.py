"""The Redis URL forms Herald reads, and the Sentinel one parsed into its parts.

Besides redis-py's own forms (``redis://``, ``rediss://`` for TLS, ``unix://``), Herald
accepts a Sentinel-managed Redis (docs/configuration.md, "Redis behind Sentinel")::

    redis+sentinel://[[username]:password@]host1:port1[,host2:port2...]/<service_name>[/<db>]

the scheme Centrifugo and most Sentinel clients use, with the sentinels' addresses (26379
when a port is left out), the service (``sentinel monitor <service_name> ...``) and the
database number. The user name and password are those of the Redis servers, not of the
sentinels. Every process that reads the URL (the fleet, the publishing library, the Q&A
core's relay) asks the sentinels for the current primary whenever it opens a connection.

This module does no I/O and imports no Redis client: the settings rules
(:mod:`herald_contract.config`) validate a URL with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from herald_contract.cluster_urls import CLUSTER_SCHEME, parse_cluster_url
from herald_contract.url_parts import split_userinfo

REDIS_SCHEMES = ("redis", "rediss", "unix")
"""redis-py's URL schemes."""
SENTINEL_SCHEME = "redis+sentinel"
SENTINEL_DEFAULT_PORT = 26379
URL_FORMS = "redis://host:port/db, rediss:// (TLS) or unix:///path/to/socket"
"""redis-py's forms, as the one-line error about a URL of no known scheme lists them (the
Sentinel form has errors of its own)."""


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A parsed ``redis+sentinel://`` URL (see the module docstring)."""

    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_sentinel_url(url: str) -> bool:
    """Whether *url* names a Sentinel-managed Redis (the ``redis+sentinel`` scheme)."""
    return url.partition("://")[0].lower() == SENTINEL_SCHEME


def check_redis_url(url: str) -> None:
    """Raise ValueError, with a one-line message, when *url* is not a form Herald reads."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.lower() == SENTINEL_SCHEME:
        parse_sentinel_url(url)
    elif sep and scheme.lower() == CLUSTER_SCHEME:
        parse_cluster_url(url)  # cluster_urls.py: the Redis Cluster form
    elif not sep or scheme not in REDIS_SCHEMES or not rest:
        raise ValueError(f"{_redacted(url)!r} is not a Redis URL: use {URL_FORMS}")


def parse_sentinel_url(url: str) -> SentinelUrl:
    """*url*'s parts; ValueError (one line, no password in it) when it is malformed."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() != SENTINEL_SCHEME:
        raise ValueError(f"{_redacted(url)!r} is not a {SENTINEL_SCHEME}:// URL")
    rest = rest.partition("?")[0].partition("#")[0]
    netloc, _, path = rest.partition("/")
    hosts, username, password = split_userinfo(netloc)
    where = _redacted(url)
    sentinels = tuple(_address(part, where) for part in hosts.split(","))
    parts = [unquote(part) for part in path.split("/")] if path else []
    if parts and parts[-1] == "":
        parts.pop()  # a trailing slash
    if not parts or not parts[0] or len(parts) > 2:
        raise ValueError(
            f"{where!r} names no service: use {SENTINEL_SCHEME}://host:port,host:port"
            "/service_name/db"
        )
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ValueError(f"{where!r}: the database {parts[1]!r} is not a number")
        db = int(parts[1])
    return SentinelUrl(sentinels, parts[0], db, username, password)


def _address(part: str, where: str) -> tuple[str, int]:
    host, colon, port = part.rpartition(":") if ":" in part else (part, "", "")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # an IPv6 literal
    if not host:
        raise ValueError(f"{where!r}: a sentinel address is empty (use host:port)")
    if not colon:
        return host, SENTINEL_DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{where!r}: the sentinel port {port!r} is not a port number")
    return host, int(port)


def _redacted(url: str) -> str:
    """*url* with any password replaced by ``***``, fit for an error message or a log."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{hosts}{slash}{path}"
