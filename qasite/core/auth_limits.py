"""How often one account and one client address may try to log in or register (issue 11, item 4).

Two sliding windows of ``auth_window_s`` (default 15 minutes), counted by
:mod:`qasite.core.ratelimit` (through Redis when ``redis_url`` is set, so every Q&A worker
shares them; else in this process):

* per account: ``auth_account_attempts`` failed logins of one email (its right password is
  refused too, until the oldest failure leaves the window), and as many registrations of one
  email (each sends a mail), as many password-reset mails and as many verification mails;
* per client address: ``auth_address_attempts`` logins, registrations, password resets and
  verification mails, whatever the account (one address trying many accounts). An IPv6
  address counts as its /64, the block one host usually gets.

Over either, :class:`TooManyAttempts` says which and for how long; the API answers 429 with
``Retry-After``. Refused attempts are not recorded (they cost no password check), so a
lockout ends when its window passes. Emails are hashed in the keys (no address book in Redis).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from qasite.core.ratelimit import MemoryWindows, Record, Windows

Scope = Literal["account", "address"]


class TooManyAttempts(Exception):
    """Over the *scope* limit; allowed again in :attr:`retry_after_s` seconds."""

    def __init__(self, scope: Scope, retry_after_s: float) -> None:
        self.scope = scope
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        who = "this account" if scope == "account" else "your address"
        super().__init__(
            f"too many attempts for {who}; retry in {self.retry_after_s} s (Retry-After)"
        )


def address_key(host: str | None) -> str:
    """The key of a client address: IPv4 as is, IPv6 as its /64 (IPv4-mapped: the IPv4)."""
    if not host:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _account_key(kind: str, email: str) -> str:
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return f"{kind}:{digest}"


@dataclass(slots=True)
class AuthLimits:
    windows: Windows
    account_attempts: int
    address_attempts: int
    window_s: float
    clock: Callable[[], float] = time.time
    """Wall-clock seconds (shared by workers through Redis); tests hand in a fake one."""

    @classmethod
    def in_process(
        cls,
        *,
        account_attempts: int,
        address_attempts: int,
        window_s: float,
        clock: Callable[[], float] = time.time,
    ) -> AuthLimits:
        return cls(MemoryWindows(), account_attempts, address_attempts, window_s, clock)

    async def _attempt(self, key: str, limit: int, record: Record, scope: Scope) -> None:
        verdict = await self.windows.attempt(
            key, limit=limit, window_s=self.window_s, now=self.clock(), record=record
        )
        if not verdict.allowed:
            raise TooManyAttempts(scope, verdict.retry_after_s)

    async def _address(self, address: str) -> None:
        await self._attempt(
            f"address:{address}", self.address_attempts, Record.IF_ALLOWED, "address"
        )

    async def before_login(self, email: str, address: str) -> None:
        """Count a login from *address*; :class:`TooManyAttempts` if it or *email* is over."""
        await self._address(address)
        await self._attempt(
            _account_key("login", email), self.account_attempts, Record.NEVER, "account"
        )

    async def login_failed(self, email: str) -> None:
        """Remember a wrong password (or an unknown email) for *email*."""
        # Recorded whatever the count: this attempt is answered 401, the next one 429.
        await self.windows.attempt(
            _account_key("login", email),
            limit=self.account_attempts,
            window_s=self.window_s,
            now=self.clock(),
            record=Record.ALWAYS,
        )

    async def before_register(self, email: str, address: str) -> None:
        """Count a registration of *email* from *address*; :class:`TooManyAttempts` if over."""
        await self._address(address)
        await self._attempt(
            _account_key("register", email), self.account_attempts, Record.IF_ALLOWED, "account"
        )

    async def before_mail(self, kind: str, email: str, address: str) -> None:
        """Count a request that mails *email* (*kind*: ``reset``, ``resend``) from *address*,
        as a registration is counted; :class:`TooManyAttempts` if either is over."""
        await self._address(address)
        await self._attempt(
            _account_key(kind, email), self.account_attempts, Record.IF_ALLOWED, "account"
        )

    async def before_reset(self, address: str) -> None:
        """Count a new password set from *address* (its token names the account)."""
        await self._address(address)

    async def aclose(self) -> None:
        await self.windows.aclose()
