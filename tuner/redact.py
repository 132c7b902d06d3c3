"""Secrets never leave the process: redaction for logs, MLflow records, reports and errors.

A secret is the value of a known credential variable (carbon API tokens, MLflow
credentials, and any variable whose name says token, password, secret or key), the
user-info part of a URI (``http://user:secret@host``), or a credential-looking query
parameter (``?token=...``, ``?auth-token=...``). :func:`redact` replaces them with
``***``; greentune calls it at every point where text leaves the process: log records
of the ``tuner``, ``mlflow`` and ``ray`` loggers, MLflow params, tags and ``config.json``,
``study.json``, ``ledger.json``, ``trials.csv``, the HTML report, Ray's result files, the
CLI's error line, and what a trial prints (in the trial process, and again in the
driver as Ray forwards it).

A variable's value is masked whatever its length from 4 characters on (``DB_PASSWORD=
hunter2`` too): shorter ones ("1", "yes") and the words true/false/none/null would mask
ordinary text everywhere, so they are left alone.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, TextIO

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

# A variable whose name says it holds a secret: PASSWORD, PASSWD or SECRET anywhere
# (PGPASSWORD, DB_PASSWORD, AWS_SECRET_ACCESS_KEY), or TOKEN, KEY, APIKEY or CREDENTIAL(S)
# as a name part (HF_TOKEN, GPG_KEY, MY_APIKEY; not TOKENIZERS_PARALLELISM or KEYRING_BACKEND).
_SECRET_NAME = re.compile(
    r"PASSWORD|PASSWD|SECRET|(^|_)(TOKEN|KEY|API_?KEY|APIKEY|ACCESS_KEY|CREDENTIALS?)($|_)", re.I
)
_MIN_SECRET_LEN = 4  # shorter values ("1", "yes") would mask ordinary text everywhere
_NOT_SECRET = frozenset({"true", "false", "none", "null"})  # flags, not credentials
# scheme://userinfo@  (userinfo: anything up to the last '@' before the host)
_URI_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")
# a query parameter whose name holds token, secret, password, key, auth, signature or
# credential: ?token=, &access_token=, ?auth-token=, &X-Amz-Signature=, ?api_key=
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;][\w.\-]*(?:token|secret|passw(?:or)?d|key|auth|signature|credential)[\w.\-]*=)"
    r"(?P<value>[^&#\s'\"<>]+)",
    re.I,
)


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values in ``environ`` (default ``os.environ``), longest first: those of
    :data:`SECRET_ENV_VARS` and of variables named like a secret, from 4 characters on."""
    env = os.environ if environ is None else environ
    values = {
        value
        for name, value in env.items()
        if (name in SECRET_ENV_VARS or _SECRET_NAME.search(name))
        and len(value) >= _MIN_SECRET_LEN and value.strip().lower() not in _NOT_SECRET
    }
    return sorted(values, key=len, reverse=True)  # a secret containing another goes first


def redact(text: str, environ: Mapping[str, str] | None = None, *, values: list[str] | None = None) -> str:
    """``text`` with secret env values, URI user-info and credential query values masked.

    ``values`` (from :func:`secret_values`) saves reading the environment again when many
    strings are masked at once.
    """
    if not text:
        return text
    for value in secret_values(environ) if values is None else values:
        text = text.replace(value, MASK)
    text = _URI_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}", text)


def redact_obj(obj: Any, environ: Mapping[str, str] | None = None, *, values: list[str] | None = None) -> Any:
    """:func:`redact` applied to every string in nested dicts, lists and tuples."""
    if values is None:
        values = secret_values(environ)
    if isinstance(obj, str):
        return redact(obj, values=values)
    if isinstance(obj, Mapping):
        return {redact(k, values=values) if isinstance(k, str) else k: redact_obj(v, values=values)
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact_obj(v, values=values) for v in obj)
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
LOGGER_PREFIXES = ("tuner", "mlflow", "ray")
_factory_lock = threading.Lock()
_factory_prefixes: set[str] | None = set()  # None: every logger (a trial process)
_base_factory: Callable[..., logging.LogRecord] | None = None


def install_log_redaction(prefixes: tuple[str, ...] = LOGGER_PREFIXES, *, every_logger: bool = False) -> None:
    """Mask secrets in every log record of the ``tuner``, ``mlflow`` and ``ray`` loggers
    (``every_logger``: of all loggers, as in a trial process, whose output all reaches
    the driver's console).

    Records are masked where they are made (a log record factory), so a child logger
    created later (``tuner.my_objective``) is covered as well; the existing loggers also
    get the filter, for records made before this was called.
    """
    global _base_factory, _factory_prefixes
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in prefixes]
    for name in {*prefixes, *names}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    with _factory_lock:
        if every_logger:
            _factory_prefixes = None
        elif _factory_prefixes is not None:
            _factory_prefixes.update(prefixes)
        if _base_factory is None:
            _base_factory = logging.getLogRecordFactory()
            logging.setLogRecordFactory(_redacting_record)


def _redacting_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    assert _base_factory is not None
    record = _base_factory(*args, **kwargs)
    prefixes = _factory_prefixes
    if prefixes is None or record.name.split(".")[0] in prefixes:
        _FILTER.filter(record)
    return record


class RedactingStream:
    """A text stream that masks secrets in what is written through it, a line at a time.

    Lines are held until their newline (``print`` writes a value and its newline in
    separate calls, and a secret must not be split between two writes), or until
    :meth:`flush`; everything else is the wrapped stream's.
    """

    def __init__(self, stream: TextIO) -> None:
        self.wrapped = stream
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            if "\n" in self._pending or len(self._pending) > 65536:
                head, newline, self._pending = self._pending.rpartition("\n")
                if not newline:
                    head, self._pending = self._pending, ""
                self.wrapped.write(redact(head + newline))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self.wrapped.write(redact(self._pending))
                self._pending = ""
        self.wrapped.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)


def install_stream_redaction() -> None:
    """In a trial process: mask secrets in what the objective prints to ``sys.stdout`` and
    ``sys.stderr`` and in every log record, before Ray writes them to the worker's log
    file and forwards them to the driver. Idempotent.

    Text written below Python (a C library, a subprocess writing to the inherited file
    descriptors) does not pass through here; the driver masks it again as it prints
    what Ray forwards (:func:`install_forwarded_output_redaction`), but the worker's own
    log file under Ray's session directory keeps it as written.
    """
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, RedactingStream):
            setattr(sys, name, RedactingStream(stream))
    install_log_redaction(every_logger=True)


def install_forwarded_output_redaction() -> bool:
    """In the driver: mask secrets in the worker output Ray forwards to this console.

    Ray prints each batch of worker lines through the handlers of its stream dispatcher
    (``log_to_driver``); a first handler masks the lines in place before Ray's printer
    sees them. Returns whether it is in place (the dispatcher is Ray-internal: a Ray
    without it leaves forwarded lines as the trial process wrote them).
    """
    try:
        from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher
    except ImportError:
        return False
    with dispatcher._lock:
        if any(name == "greentune_redact" for name, _ in dispatcher.handlers):
            return True
        dispatcher.handlers = [("greentune_redact", _redact_forwarded), *dispatcher.handlers]
    return True


def _redact_forwarded(data: dict[str, Any]) -> None:
    lines = data.get("lines")
    if lines:
        values = secret_values()
        data["lines"] = [redact(line, values=values) if isinstance(line, str) else line for line in lines]


def protect_study(tracking_uri: str | None) -> None:
    """Everything a study needs before it logs: log records and forwarded trial output
    masked, MLflow's URL print off.

    MLflow prints ``View run ... at: <tracking URI>`` to stdout for a server store,
    credentials included, so that print is switched off when the URI carries any.
    """
    install_log_redaction()
    install_forwarded_output_redaction()
    if has_credentials(tracking_uri):
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
