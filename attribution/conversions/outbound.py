"""Where conversions may be sent: URL checks at validation, address checks at connect time.

A destination's URL is checked twice:

- when its config is read (``checked_url``): http(s) only, a host, no userinfo, no query
  or fragment;
- when a connection is opened (``guarded_session``): the host name is resolved, *every*
  address it resolves to must be public, and the socket is connected to one of the addresses
  just checked. A name that resolves to a public address when validated and to 127.0.0.1
  later (DNS rebinding) is refused, since the check and the connection use the same lookup.

Loopback, private, link-local (cloud metadata 169.254.169.254), unique-local (fd00:ec2::254),
unspecified (0.0.0.0), multicast and reserved addresses are refused, also when wrapped in an
IPv6 form (``::ffff:127.0.0.1``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``). An operator may
name hosts that are exempt (``DNI_OUTBOUND_ALLOW_HOSTS``), for local test receivers only.
TLS is untouched: the certificate is still checked against the URL's host name.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import create_connection

NAT64 = ipaddress.ip_network("64:ff9b::/96")
UNSAFE_CHARACTERS = re.compile(r"[\x00-\x20\x7f\\]")


class ForbiddenAddress(Exception):
    """The destination's host resolves to an address conversions may not be sent to.

    Deliberately not an ``OSError``: urllib3 and requests let it through unchanged, so the
    delivery is marked failed with this message instead of being retried as a network error.
    """


# -- validation ----------------------------------------------------------------------------


def checked_url(value: str) -> str:
    """``value`` if it is an absolute http(s) URL without userinfo, query or fragment, else
    ValueError."""
    if UNSAFE_CHARACTERS.search(value):
        raise ValueError("a URL may not contain spaces, control characters or backslashes")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http(s) URL")
    if "@" in parts.netloc:
        raise ValueError("a URL may not carry a user name or password")
    if "#" in value or "?" in value:  # either would swallow the platform's path
        raise ValueError("a URL may not have a query (?) or a fragment (#)")
    return value


def masked_url(value: str) -> str:
    """``value`` as it may be shown: any user name and password replaced by ``****``."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return value
    if "@" not in parts.netloc:
        return value
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"****@{host}"))


# -- addresses -----------------------------------------------------------------------------


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` may not be connected to, or None when it is a public address."""
    if address.version == 6:
        embedded = address.ipv4_mapped or address.sixtofour or (
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in NAT64 else None)
        if embedded is not None:
            return refusal(embedded)
    for name in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{name}"):
            return name.replace("_", "-")
    return None if address.is_global else "non-public"


class AddressGuard:
    """Resolves a host and refuses it unless every address is public (or the host is exempt)."""

    def __init__(self, allow_hosts: Iterable[str] = ()):
        self.allow_hosts = frozenset(h.strip().lower().rstrip(".") for h in allow_hosts if h.strip())

    def exempt(self, host: str) -> bool:
        return host.strip("[]").lower().rstrip(".") in self.allow_hosts

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to; ForbiddenAddress if any of them is not public."""
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not self.exempt(host):
            for text in addresses:
                why = refusal(ipaddress.ip_address(text.split("%", 1)[0]))
                if why:
                    raise ForbiddenAddress(
                        f"{host} resolves to {text}, a {why} address: conversions are only "
                        "sent to public addresses")
        return addresses


# -- connections that use the guard --------------------------------------------------------


class _GuardedConnection:
    """Mixed into urllib3's connections: resolve, check, connect to a checked address."""

    guard: AddressGuard

    def _new_conn(self) -> socket.socket:
        try:
            addresses = self.guard.resolve(self._dns_host, self.port)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        error: OSError | None = None
        for address in addresses:
            try:
                return create_connection((address, self.port), self.timeout,
                                         source_address=self.source_address,
                                         socket_options=self.socket_options)
            except TimeoutError as exc:
                raise ConnectTimeoutError(
                    self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
                ) from exc
            except OSError as exc:
                error = exc
        raise NewConnectionError(self, f"Failed to establish a new connection: {error}")


class GuardedAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections pass through an ``AddressGuard``."""

    def __init__(self, guard: AddressGuard, **kwargs):
        attrs = {"guard": guard}
        http = type("GuardedHTTPConnection", (_GuardedConnection, HTTPConnection), attrs)
        https = type("GuardedHTTPSConnection", (_GuardedConnection, HTTPSConnection), attrs)
        self._pool_classes = {
            "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes


def guarded_session(allow_hosts: Iterable[str] = ()) -> requests.Session:
    """A requests session that only connects to public addresses (save ``allow_hosts``).

    Proxy settings from the environment are ignored: a proxy would make the connection on
    our behalf, out of the guard's sight.
    """
    session = requests.Session()
    session.trust_env = False
    adapter = GuardedAdapter(AddressGuard(allow_hosts))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
