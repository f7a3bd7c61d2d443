"""Logging, set up once per process: one JSON object per line (console on a terminal).

Everything a process writes to its log goes through one handler on the root logger,
whose formatter is structlog's ``ProcessorFormatter``:
- our own events (structlog; stdlib loggers under ``xo.``, at ``LOG_LEVEL``);
- the libraries' records (uvicorn, including its error logs, faststream, aio_pika,
  aiormq, pymongo, asyncio: warnings and errors only), with their ``logger`` name;
- Python warnings (``logging.captureWarnings``) and exceptions nobody caught
  (``sys.excepthook``, ``threading.excepthook``, ``sys.unraisablehook``).

In JSON a traceback is the structured field ``exception`` of the same line (a list of
``{exc_type, exc_value, frames: [{filename, lineno, name}]}``, outermost first; local
variables are never included: they may hold secrets), never extra lines.

The messaging runtime binds ``correlation_id`` and ``message_id`` in context
variables, so every line written while handling a message carries them, library lines
included.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Any, TextIO

import structlog
from structlog.processors import ExceptionRenderer
from structlog.tracebacks import ExceptionDictTransformer

OWN = "xo"  # our structlog events are records of stdlib loggers ``xo.<name>``
LIBRARY_LEVEL = logging.WARNING  # libraries: warnings and errors only
_HANDLER_MARK = "_xo_handler"


def uses_json(fmt: str) -> bool:
    """``json``, ``console``, or ``auto``: JSON unless stderr is a terminal."""
    return fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())


def _stdlib_logger(*args: Any) -> logging.Logger:
    name = args[0] if args and isinstance(args[0], str) else "app"
    return logging.getLogger(f"{OWN}.{name}")


def _drop_own_logger_name(
    _: Any, __: str, event_dict: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Library lines say which logger wrote them; ours are told apart by ``event``."""
    if event_dict.get("logger", "").startswith(f"{OWN}."):
        del event_dict["logger"]
    return event_dict


def configure_logging(
    *, service: str, fmt: str = "auto", level: str = "INFO", stream: TextIO | None = None
) -> None:
    output = stream or sys.stderr
    own_level = logging.getLevelName(level.upper())
    if not isinstance(own_level, int):
        own_level = logging.INFO

    def add_service(
        _: Any, __: str, event_dict: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        event_dict.setdefault("service", service)  # also on lines from other threads
        return event_dict

    stamp: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[structlog.typing.Processor]
    if uses_json(fmt):
        rendering = [
            ExceptionRenderer(ExceptionDictTransformer(show_locals=False, max_frames=30)),
            structlog.processors.JSONRenderer(),
        ]
    else:
        rendering = [structlog.dev.ConsoleRenderer()]
    structlog.configure(
        processors=[*stamp, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(own_level),
        logger_factory=_stdlib_logger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(output)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*stamp, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _drop_own_logger_name,
                *rendering,
            ],
        )
    )
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for previous in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(max(LIBRARY_LEVEL, own_level))
    logging.getLogger(OWN).setLevel(own_level)
    logging.captureWarnings(True)
    _route_uncaught()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)


def _route_uncaught() -> None:
    """Exceptions nobody caught become one log line each, like everything else."""
    uncaught = logging.getLogger(f"{OWN}.uncaught")

    def excepthook(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, value, tb)
            return
        uncaught.critical("uncaught_exception", exc_info=(kind, value, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread else "?"
        uncaught.error(
            "thread_failed: %s", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
        )

    def unraisablehook(unraisable: Any) -> None:
        value = unraisable.exc_value
        exc_info = (type(value), value, unraisable.exc_traceback) if value else None
        where = unraisable.err_msg or "Exception ignored in"
        uncaught.error(f"{where}: {unraisable.object!r}", exc_info=exc_info)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    sys.unraisablehook = unraisablehook


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
