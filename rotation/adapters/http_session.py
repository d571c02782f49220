"""A requests session for the re-wrap's hot path: azure-core's transport, minus per-request bookkeeping.

azure-core's ``RequestsTransport`` (unchanged) sends every request through ``session.request``. A
plain ``requests.Session`` spends most of its time there on things the Azure SDK never uses: merging
and extracting cookies, dispatching hooks, walking the environment for proxies and ``~/.netrc``, and
redirect bookkeeping (azure-core sends ``allow_redirects=False``). ``DirectSession.request`` prepares the
request with requests' own ``PreparedRequest`` and hands it straight to the mounted ``HTTPAdapter``
(urllib3's connection pool), so bodies, TLS verification, timeouts, streaming and the exceptions that
azure-core maps to its error types are exactly requests' own. Measured on the re-wrap (two requests per
blob), it takes about a quarter off the client's CPU per blob (``docs/decisions/0002-rewrap-http-session.md``).

Used where the service makes hundreds or thousands of calls (the re-wrap's blob and unwrap clients, the
journal, and the storage-account and workspace clients a re-point step shares between its threads, sized by
``pool_for``), and only when no proxy is configured: ``direct_session_kwargs`` leaves the transport alone
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from urllib3.util.retry import Retry


class DirectSession(requests.Session):
    """A ``requests.Session`` whose ``request`` goes straight to the connection pool.

    No cookies, hooks, authentication, environment settings or redirects: azure-core authenticates
    with its own policies, sends ``allow_redirects=False`` and, here, passes verification explicitly.
    """

    def __init__(self, pool_maxsize: int = 10) -> None:
        super().__init__()
        self.trust_env = False
        # No retries or redirects in urllib3: azure-core's retry policy (or the re-wrap limiter) owns them.
        adapter = HTTPAdapter(
            pool_connections=4,
            pool_maxsize=max(1, pool_maxsize),
            max_retries=Retry(total=False, redirect=False, raise_on_status=False),
        )
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def request(  # type: ignore[override]  # noqa: PLR0917 - requests.Session.request's own signature
        self,
        method: str | bytes,
        url: str | bytes,
        params: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = False,
        proxies: Mapping[str, str] | None = None,
        hooks: Any = None,
        stream: bool | None = None,
        verify: bool | str | None = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        if cookies or auth or hooks or allow_redirects:
            raise ValueError("DirectSession sends without cookies, auth, hooks or redirects")
        merged: CaseInsensitiveDict[str | bytes] = CaseInsensitiveDict(self.headers)
        for name, value in (headers or {}).items():
            if value is None:  # requests' rule: a None header removes the session's default
                merged.pop(name, None)
            else:
                merged[name] = value
        # PreparedRequest.prepare without its cookie, auth and hook steps: requests' own body, URL and
        # header preparation.
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method.decode() if isinstance(method, bytes) else method)
        prepared.prepare_url(url.decode() if isinstance(url, bytes) else url, params or {})
        prepared.prepare_headers(merged)
        prepared.prepare_body(data or {}, files, json)
        response = self.get_adapter(prepared.url or "").send(
            prepared,
            stream=bool(stream),
            timeout=timeout,
            verify=True if verify is None else verify,
            cert=cert,
            proxies=dict(proxies or {}),
        )
        if not stream:
            _ = response.content  # read the body now, as Session.send does, so the connection returns to the pool
        return response


def pool_for(threads: int) -> int:
    """Connections to keep per host for ``threads`` concurrent callers: one each, plus two spare, so no
    thread opens and discards connections (urllib3 warns "Connection pool is full")."""
    return threads + 2


def direct_session_kwargs(client_kwargs: Mapping[str, Any], pool_maxsize: int) -> dict[str, Any]:
    """``client_kwargs`` plus a fresh ``DirectSession`` (owned by the client's transport), unless the
    environment configures a proxy (``use_env_settings`` left on): then the kwargs are returned as given."""
    kwargs = dict(client_kwargs)
    if kwargs.get("use_env_settings") is False and "session" not in kwargs and "transport" not in kwargs:
        kwargs["session"] = DirectSession(pool_maxsize)
    return kwargs
