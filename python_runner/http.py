"""The HTTP client a Python job gets as ctx.http: timeouts, JSON, and failures classified for the engine.

Every failure becomes a JobError in category API with the HTTP status (etl.error_classes decides:
429 and 5xx transient, other 4xx permanent, by default); a timeout or an unreachable host is a
transient API error. Each request's latency is reported to the runner's metrics.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from .context import JobError


class HttpClient:
    def __init__(self, timeout: float = 30.0,
                 on_request: Callable[[str, int | None, float], None] | None = None):
        self.timeout = timeout
        self.on_request = on_request

    def get_json(self, url: str, params: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> Any:
        if params:
            url = url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)
        host = urllib.parse.urlsplit(url).netloc
        request = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
        started = time.monotonic()
        status: int | None = None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                status = resp.status
                return json.load(resp)
        except urllib.error.HTTPError as exc:
            status = exc.code
            raise JobError(f"GET {host}{urllib.parse.urlsplit(url).path}: HTTP {exc.code}", category="API",
                           http_status=exc.code, error_type=f"http_{exc.code}") from None
        except TimeoutError:
            raise JobError(f"GET {host}: no answer within {self.timeout:g} s", category="API",
                           transient=True, error_type="timeout") from None
        except urllib.error.URLError as exc:
            raise JobError(f"GET {host}: {exc.reason}", category="API", transient=True,
                           error_type="unreachable") from None
        except json.JSONDecodeError as exc:
            raise JobError(f"GET {host}: the answer is not JSON ({exc})", category="DATA",
                           transient=False, error_type="bad_json") from None
        finally:
            if self.on_request is not None:
                self.on_request(host, status, time.monotonic() - started)
