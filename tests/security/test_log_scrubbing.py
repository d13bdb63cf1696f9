"""The log configuration itself masks credentials: by key, and inside any string, tracebacks included.

Why: the adapters never put a token in a message, but a third-party error text (a proxy echoing
the request's headers, an exception's repr) could. The processors in :mod:`autoscaler.logs` are
the last line of defence; this checks them through :func:`autoscaler.logs.configure` as the CLI
uses it, on the rendered JSON. Pure: no server.
"""

from __future__ import annotations

import io
import json
import secrets

from autoscaler.logs import configure, get_logger


def test_credentials_are_masked_in_values_nested_fields_and_tracebacks() -> None:
    """A bearer credential is masked wherever it appears; prose about tokens and other text are kept."""
    token = secrets.token_urlsafe(32)
    stream = io.StringIO()
    configure(fmt="json", level="debug", stream=stream)
    log = get_logger(component="test")
    log.debug("query_failed", error=f"HTTP 401: unauthorized: 'Authorization: Bearer {token}'",
              steps=[{"detail": f"echo bearer%20{token}"}], answer=("ok", f"BEARER {token}"),
              prose="the bearer token file /var/run/token is empty", api_token=token)
    try:
        raise RuntimeError(f"upstream said Bearer {token}")
    except RuntimeError:
        log.error("cycle_failed", exc_info=True)
    text = stream.getvalue()
    assert token not in text
    first, second = (json.loads(line) for line in text.splitlines())
    assert first["error"] == "HTTP 401: unauthorized: 'Authorization: Bearer ***'"
    assert first["steps"] == [{"detail": "echo bearer%20***"}] and first["answer"] == ["ok", "BEARER ***"]
    assert first["prose"] == "the bearer token file /var/run/token is empty"
    assert first["api_token"] == "***"
    assert "RuntimeError: upstream said Bearer ***" in second["exception"]
