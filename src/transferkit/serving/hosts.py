"""Which `Host` names the server answers: a guard against DNS rebinding, as Jupyter and MLflow have.

A web page on any site can make the visitor's browser send requests to a name its owner
controls, then point that name at 127.0.0.1: the browser treats the server as the page's own
site and lets the page read its answers. Such requests carry the page's name in the `Host`
header, so a server that answers only its own names is out of reach.

`host_names(host, extra)` is the list: localhost, 127.0.0.1 and ::1, the address the server
listens on (for 0.0.0.0 or ::, this machine's name), and `extra` (`--allowed-hosts`; `*`
allows any name, `*.example.org` a domain). `HostCheck` enforces it with Starlette's
`TrustedHostMiddleware`, answering a refused name with a JSON error that says how to allow it.
"""

from __future__ import annotations

import ipaddress
import socket

from transferkit.errors import InputError

__all__ = ["LOCAL_HOSTS", "host_names", "HostCheck"]

LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
WILDCARD_ADDRESSES = ("0.0.0.0", "::", "")


def _host_name(entry: str) -> str:
    """`entry` as Starlette compares it with a `Host` header (IPv6 in brackets, lower case), or
    an `InputError` that says what a name may look like."""
    name = entry.strip().lower()
    try:
        if ipaddress.ip_address(name.strip("[]")).version == 6:
            return f"[{name.strip('[]')}]"
    except ValueError:
        pass
    wildcard_ok = name == "*" or (name.startswith("*.") and "*" not in name[2:])
    if not name or "/" in name or ":" in name or ("*" in name and not wildcard_ok):
        raise InputError(
            f"`allowed_hosts` holds {entry!r}, which is not a host name. Give names or addresses "
            "without a scheme or port, separated by commas: example.org,192.168.1.5,*.lan "
            "(* allows any name)."
        )
    return name


def host_names(host: str | None = None, extra=()) -> list[str]:
    """The `Host` names a server listening on `host` answers.

    Args:
        host: the address it listens on. Defaults to `None`: only the local names and `extra`.
        extra: more names (a list, or one comma-separated string): `example.org`, `192.168.1.5`,
            `*.example.org`, or `*` for any. Defaults to none.

    Returns:
        The names, as `TrustedHostMiddleware` takes them.

    Raises:
        InputError: an entry of `extra` is not a host name (a URL, or a name with a port).
    """
    if isinstance(extra, str):  # "a.org,b.org," from the command line: no empty names
        extra = [name for name in extra.split(",") if name.strip()]
    names = list(LOCAL_HOSTS)
    if host is None:
        pass
    elif host in WILDCARD_ADDRESSES:  # every address of this machine: its names too
        names.append(socket.gethostname())  # no DNS look-up: it could stall
    else:
        names.append(host)
    names += list(extra)
    result = []
    for name in names:
        name = _host_name(name)
        if name not in result:
            result.append(name)
    return result


class HostCheck:
    """ASGI middleware: `TrustedHostMiddleware` over `allowed`, with a JSON refusal (400)."""

    def __init__(self, app, allowed):
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        self.app = app
        self.allowed = list(allowed)
        self._check = TrustedHostMiddleware(self._allow, allowed_hosts=self.allowed,
                                            www_redirect=False)

    async def _allow(self, scope, receive, send):
        scope["transferkit.host_allowed"] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_or_refuse(message):
            if scope.get("transferkit.host_allowed"):
                await send(message)
            elif message["type"] == "http.response.start":  # Starlette refused the name
                await self._refusal(scope)(scope, receive, send)

        await self._check(scope, receive, send_or_refuse)

    def _refusal(self, scope):
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse

        host = Headers(scope=scope).get("host")
        if host is None:
            message = "The request has no Host header; send one naming this server."
        else:
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            message = (
                f"This server does not answer the Host {host!r}, so that web pages on other "
                f"sites cannot reach it (DNS rebinding). It answers {', '.join(self.allowed)}; "
                f"to allow this name, start it with --allowed-hosts {name} (or "
                f"create_app(..., allowed_hosts=[{name!r}]))."
            )
        return JSONResponse({"error": message}, status_code=400)
