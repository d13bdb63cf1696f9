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


def test_library_log_lines_are_json_and_masked_too() -> None:
    """kubernetes/urllib3/apscheduler records and warnings come out as JSON objects with their logger name."""
    import logging
    import warnings

    token = secrets.token_urlsafe(32)
    stream = io.StringIO()
    configure(fmt="json", level="info", stream=stream)
    logging.getLogger("urllib3.connectionpool").warning("Retrying (%s) after %s", "Retry(total=0)", "reset")
    logging.getLogger("apscheduler.scheduler").info("Running job (every cycle: kept out at info)")
    logging.getLogger("apscheduler.scheduler").warning("Run time of job was missed")
    logging.getLogger("kubernetes.client.rest").debug("dropped below the level")
    try:
        raise OSError(f"proxy said Authorization: Bearer {token}")
    except OSError:
        logging.getLogger("kubernetes.client.rest").error("request failed", exc_info=True)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("Unverified HTTPS request", stacklevel=1)
    text = stream.getvalue()
    assert token not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert [(r["logger"], r["level"]) for r in lines] == [
        ("urllib3.connectionpool", "warning"),
        ("apscheduler.scheduler", "warning"),
        ("kubernetes.client.rest", "error"),
        ("py.warnings", "warning"),
    ]
    assert lines[0]["event"] == "Retrying (Retry(total=0)) after reset" and "timestamp" in lines[0]
    assert "OSError: proxy said Authorization: Bearer ***" in lines[2]["exception"]
    assert "Unverified HTTPS request" in lines[3]["event"]
    configure(fmt="json", level="info", stream=io.StringIO())  # reconfiguring replaces the bridge
    assert sum(type(h).__name__ == "_Bridge" for h in logging.getLogger().handlers) == 1
    logging.captureWarnings(False)
