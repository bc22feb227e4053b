"""Pieces of URL parsing the Sentinel and Cluster URL forms share (no I/O, no Redis client)."""

from __future__ import annotations

from urllib.parse import unquote


def split_userinfo(netloc: str) -> tuple[str, str | None, str | None]:
    """``[[username]:password@]hosts`` as (hosts, username, password), percent-decoded.

    An empty user name is None; a password is None only when there is no ``:`` at all.
    """
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    return hosts, username, password
