"""The platform's REST checks that come before every session.

`GET /service-info` (reachable, new enough) and `GET /user` (token valid).
Runs on the main thread; each failure is raised as the error class that
says whether to retry (ConnectionLost) or to give up.
"""

import logging

from .connection import http_get
from .errors import ConfigError, ConnectionLost, RefusedError

log = logging.getLogger(__name__)

REQUIRED_API_VERSION = "1.8"


def version_tuple(text):
    """`1.10.2` as (1, 10, 2); None when a segment is not a number."""
    parts = []
    for segment in str(text).strip().split("."):
        digits = ""
        for char in segment:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            return None
        parts.append(int(digits))
    return tuple(parts)


def is_older(version, required=REQUIRED_API_VERSION):
    """True when `version` is older than `required`, segment by segment."""
    have, need = version_tuple(version), version_tuple(required)
    if have is None or need is None:
        return False
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) < need + (0,) * (width - len(need))


def check_service_info(endpoint, url, token, context, environ):
    """The serviceInfo object; raises when the endpoint is wrong or down."""
    reply = http_get(endpoint, "/service-info", token, context, environ)
    if reply.status == 404:
        hint = "" if url.endswith("/api") else f"; did you mean {url}/api ?"
        raise ConfigError(f"{url}/service-info was not found (HTTP 404){hint}")
    if reply.status >= 500 or reply.status in (408, 429):
        raise ConnectionLost(f"service-info answered HTTP {reply.status}")
    if reply.status != 200:
        raise ConfigError(
            f"{url}/service-info answered HTTP {reply.status}: is this a Seqera "
            "Platform API endpoint?"
        )
    try:
        info = reply.json().get("serviceInfo") or {}
    except (ValueError, AttributeError) as exc:
        raise ConnectionLost("service-info did not answer with JSON") from exc
    api_version = info.get("apiVersion") if isinstance(info, dict) else None
    if api_version is not None and is_older(api_version):
        raise RefusedError(
            f"the platform's API version {api_version} is older than {REQUIRED_API_VERSION}, which this agent "
            "needs"
        )
    return info if isinstance(info, dict) else {}


def check_user(endpoint, url, token, context, environ):
    """Succeeds when the token is valid for this endpoint."""
    reply = http_get(endpoint, "/user", token, context, environ)
    if reply.status in (401, 403):
        raise RefusedError(
            f"the access token is not valid for {url} (HTTP {reply.status}): "
            "check the token and the URL"
        )
    if reply.status >= 500 or reply.status in (408, 429):
        raise ConnectionLost(f"user check answered HTTP {reply.status}")
    if reply.status != 200:
        raise ConfigError(f"{url}/user answered HTTP {reply.status}")
