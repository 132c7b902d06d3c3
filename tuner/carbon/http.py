"""The HTTP client every web provider shares: timeouts, retries with backoff, a small
TTL cache, and redaction so a token can never leak into a log line or an error message.

Retries and backoff are urllib3's ``Retry`` (on connection errors, 429 and 5xx, honouring
``Retry-After``); the cache keeps the last few answers for ``ttl_s`` seconds, so a
scheduler polling every few seconds costs the API one call per ``ttl_s``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from tuner.errors import ProviderError


class JsonClient:
    """GET JSON from ``base_url`` with retries, a timeout and a TTL cache.

    ``secrets`` are scrubbed from every error message this client raises.

    Example::

        client = JsonClient("https://api.carbonintensity.org.uk", name="ukci")
        client.get("/intensity")["data"][0]["intensity"]["actual"]
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        ttl_s: float = 300.0,
        cache_size: int = 32,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self._secrets = tuple(s for s in secrets if s)
        self._cache: OrderedDict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, Any]] = (
            OrderedDict()
        )
        self._cache_size = cache_size
        self._lock = threading.Lock()
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=backoff_s,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"GET"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.session.headers.update(headers or {})
        self.session.auth = auth
        self.calls = 0  # requests actually sent (cache misses), for tests and diagnostics

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles a study's searcher and callbacks into its experiment directory
        (``tuner.pkl``); the session (headers, auth: tokens) and the cache never go there.
        An unpickled client has no credentials: greentune never restores one that way."""
        hidden = {"_lock", "session", "_secrets", "_cache"}
        return {k: v for k, v in self.__dict__.items() if k not in hidden}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._secrets = ()
        self._cache = OrderedDict()
        self.session = requests.Session()

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def add_secret(self, value: str) -> None:
        """Scrub ``value`` from every later error message."""
        if value:
            self._secrets = (*self._secrets, value)

    def set_header(self, key: str, value: str, *, secret: bool = False) -> None:
        """Set a header on every later request (``secret`` values are also redacted)."""
        self.session.headers[key] = value
        if secret:
            self.add_secret(value)

    def get(self, path: str, params: Mapping[str, Any] | None = None, *, cache: bool = True) -> Any:
        """The decoded JSON body of ``GET base_url + path``; raises :class:`ProviderError`."""
        key = (path, tuple(sorted((k, str(v)) for k, v in (params or {}).items())))
        now = time.monotonic()
        if cache:
            with self._lock:
                hit = self._cache.get(key)
                if hit and now - hit[0] < self.ttl_s:
                    self._cache.move_to_end(key)
                    return hit[1]
        body = self._fetch(path, params)
        if cache:
            with self._lock:
                self._cache[key] = (now, body)
                self._cache.move_to_end(key)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return body

    def _fetch(self, path: str, params: Mapping[str, Any] | None) -> Any:
        self.calls += 1
        try:
            response = self.session.get(self.base_url + path, params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            kind = type(exc).__name__
            raise ProviderError(self.redact(f"{self.name}: {kind} for {path}")) from None
        if response.status_code != 200:
            snippet = self.redact(response.text[:200].replace("\n", " "))
            raise ProviderError(f"{self.name}: HTTP {response.status_code} for {path}: {snippet}")
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"{self.name}: {path} did not return JSON") from None
