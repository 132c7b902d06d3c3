"""Secrets never leave the process: redaction for logs, MLflow records, reports and errors.

A secret is the value of a known credential variable (carbon API tokens, MLflow
credentials, and any variable whose name says token, password, secret or key), the
user-info part of a URI (``http://user:secret@host``), or a credential-looking query
parameter (``?token=...``). :func:`redact` replaces them with ``***``; greentune calls it
at every point where text leaves the process: log records of the ``tuner`` (and
``mlflow``) loggers, MLflow params, tags and ``config.json``, ``study.json``, the HTML
report, and the CLI's error line.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"

SECRET_ENV_VARS = (
    "ELECTRICITYMAPS_TOKEN",
    "WATTTIME_TOKEN",
    "WATTTIME_PASSWORD",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
)
"""Variables whose values are always secret, whatever they hold."""

# a name part such as FOO_TOKEN, API_KEY, DB_PASSWORD (not TOKENIZERS_PARALLELISM)
_SECRET_NAME = re.compile(r"(^|_)(TOKEN|PASSWORD|PASSWD|SECRET|API_?KEY|ACCESS_KEY|CREDENTIALS?)($|_)", re.I)
_MIN_SECRET_LEN = 4  # shorter values ("1", "yes") would mask ordinary text
_MIN_GUESSED_LEN = 8  # for variables that only look secret by name
# scheme://userinfo@  (userinfo: anything up to the last '@' before the host)
_URI_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:token|access_token|api_key|apikey|auth|password|secret|key)=)(?P<value>[^&#\s'\"<>]+)",
    re.I,
)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values in ``environ`` (default ``os.environ``), longest first."""
    env = os.environ if environ is None else environ
    values = {
        value
        for name, value in env.items()
        if (name in SECRET_ENV_VARS and len(value) >= _MIN_SECRET_LEN)
        or (_SECRET_NAME.search(name) and len(value) >= _MIN_GUESSED_LEN)
    }
    return sorted(values, key=len, reverse=True)  # a secret containing another goes first


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with secret env values, URI user-info and credential query values masked."""
    if not text:
        return text
    for value in secret_values(environ):
        text = text.replace(value, MASK)
    text = _URI_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}", text)


def redact_obj(obj: Any, environ: Mapping[str, str] | None = None) -> Any:
    """:func:`redact` applied to every string in nested dicts, lists and tuples."""
    if isinstance(obj, str):
        return redact(obj, environ)
    if isinstance(obj, Mapping):
        return {redact(str(k), environ) if isinstance(k, str) else k: redact_obj(v, environ) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v, environ) for v in obj)
    return obj


def has_credentials(uri: str | None) -> bool:
    """Whether ``uri`` carries a password or token in itself."""
    return bool(uri) and redact(uri, environ={}) != uri


class RedactingFilter(logging.Filter):
    """Masks secrets in a log record's message (arguments merged in) and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's problem, not ours
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()
LOGGER_PREFIXES = ("tuner", "mlflow")


def install_log_redaction(prefixes: tuple[str, ...] = LOGGER_PREFIXES) -> None:
    """Put the redacting filter on the ``tuner`` and ``mlflow`` loggers and their children.

    A logger's filter sees only records logged to that very logger, not those its
    children propagate, so every existing child gets the filter too; call this again
    once more modules are imported (``tune()`` does, before the study starts).
    """
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in prefixes]
    for name in {*prefixes, *names}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def protect_study(tracking_uri: str | None) -> None:
    """Everything a study needs before it logs: filters on, MLflow's URL print off.

    MLflow prints ``View run ... at: <tracking URI>`` to stdout for a server store,
    credentials included, so that print is switched off when the URI carries any.
    """
    install_log_redaction()
    if has_credentials(tracking_uri):
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
