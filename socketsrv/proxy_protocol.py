"""The PROXY protocol header (HAProxy's spec, versions 1 and 2), read off a connection's start.

A load balancer configured with ``send-proxy`` (v1, text) or ``send-proxy-v2`` (binary)
writes one header before the client's bytes, naming the client's address. With
``proxy_protocol`` on, a worker reads it first (socketsrv/connection.py) and takes the client
address from it; a connection without a valid header is dropped (only the balancer may reach
a worker that expects one). ``LOCAL`` (v2) and ``UNKNOWN`` (v1) headers, which a balancer
sends on its own health checks, name no client: the TCP peer's address stands.

:func:`parse_proxy_header` is pure: it is given the bytes received so far.
"""

from __future__ import annotations

import ipaddress
import socket

__all__ = ["MAX_HEADER_BYTES", "V2_SIGNATURE", "ProxyHeaderError", "parse_proxy_header"]

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V1_PREFIX = b"PROXY "
V1_MAX_BYTES = 107
"""The longest v1 line, CRLF included (the spec's bound)."""
MAX_HEADER_BYTES = 16 + 2048
"""The longest v2 header accepted: the addresses and a few TLVs (HAProxy sends < 100 bytes)."""

_V2_FAMILIES = {0x11: (socket.AF_INET, 4), 0x21: (socket.AF_INET6, 16)}
"""TCP over IPv4 and IPv6; other families (UDP, unix) name no usable client address."""


class ProxyHeaderError(ValueError):
    """The connection did not start with a valid PROXY header."""


def parse_proxy_header(data: bytes) -> tuple[str | None, int] | None:
    """The client address in the header at the start of *data* and the header's length.

    None when *data* is a valid beginning that needs more bytes; the address is None for a
    LOCAL or UNKNOWN header (the peer's address stands). Raises :class:`ProxyHeaderError`.
    """
    if not data:
        return None
    if V2_SIGNATURE.startswith(data[:12]):
        return _parse_v2(data)
    if V1_PREFIX.startswith(data[:6]):
        return _parse_v1(data)
    raise ProxyHeaderError("no PROXY header")


def _parse_v1(data: bytes) -> tuple[str | None, int] | None:
    end = data.find(b"\r\n", 0, V1_MAX_BYTES)
    if end < 0:
        if len(data) >= V1_MAX_BYTES:
            raise ProxyHeaderError("v1 line too long")
        return None
    parts = data[:end].split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return None, end + 2
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("malformed v1 line")
    try:
        address = ipaddress.ip_address(parts[2].decode("ascii"))
        ports = [int(p) for p in parts[4:6]]
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProxyHeaderError("malformed v1 address") from exc
    if address.version != (4 if parts[1] == b"TCP4" else 6) or not all(
        0 <= p <= 65535 for p in ports
    ):
        raise ProxyHeaderError("malformed v1 address")
    return str(address), end + 2


def _parse_v2(data: bytes) -> tuple[str | None, int] | None:
    if len(data) < 16:
        return None
    version_command, family = data[12], data[13]
    length = 16 + int.from_bytes(data[14:16], "big")
    if version_command >> 4 != 2 or version_command & 0x0F > 1:
        raise ProxyHeaderError("unknown v2 version or command")
    if length > MAX_HEADER_BYTES:
        raise ProxyHeaderError("v2 header too long")
    if len(data) < length:
        return None
    if version_command & 0x0F == 0 or family not in _V2_FAMILIES:
        return None, length  # LOCAL (a health check), or a family without a TCP address
    af, size = _V2_FAMILIES[family]
    if length < 16 + 2 * size + 4:
        raise ProxyHeaderError("v2 addresses truncated")
    return socket.inet_ntop(af, data[16 : 16 + size]), length
