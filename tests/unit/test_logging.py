"""Every log line is one JSON object: ours, the libraries', warnings and tracebacks.

Runs in a child interpreter, since logging is configured once per process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

PROGRAM = textwrap.dedent(
    """
    import asyncio, logging, threading, warnings
    from shared.runtime.logging import configure_logging, get_logger

    configure_logging(service="probe", fmt="json", level="INFO")
    log = get_logger("probe")
    log.info("ours", order_id="ol_1")
    log.debug("too_fine")
    logging.getLogger("faststream").info("library chatter")
    logging.getLogger("aio_pika.robust_connection").warning("Connection attempt to %s failed", "x")
    secret = "s3cr3t-in-a-local"
    try:
        {}["missing"]
    except KeyError:
        log.exception("handler_failed", routing_key="plan.bind")
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application\\n")
    warnings.warn("a library warning", UserWarning)
    thread = threading.Thread(target=lambda: 1 / 0, name="worker")
    thread.start()
    thread.join()

    async def orphan() -> None:
        raise ValueError("never retrieved")

    async def main() -> None:
        asyncio.get_running_loop().create_task(orphan())
        await asyncio.sleep(0.01)

    asyncio.run(main())
    raise RuntimeError("nobody caught this")
    """
)


def _run(program: str) -> tuple[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout, done.stderr


def test_every_line_ours_libraries_warnings_and_tracebacks_is_one_json_object() -> None:
    stdout, stderr = _run(PROGRAM)
    assert stdout == ""
    lines: list[dict[str, Any]] = [json.loads(line) for line in stderr.splitlines()]
    assert all(isinstance(line, dict) for line in lines)
    events = [line["event"] for line in lines]
    assert "too_fine" not in events and "library chatter" not in events  # levels hold
    assert all(line["service"] == "probe" and line["timestamp"] for line in lines)

    [ours] = [line for line in lines if line["event"] == "ours"]
    assert (ours["level"], ours["order_id"]) == ("info", "ol_1")
    assert "logger" not in ours
    [library] = [line for line in lines if line.get("logger") == "aio_pika.robust_connection"]
    assert (library["event"], library["level"]) == ("Connection attempt to x failed", "warning")

    failed = next(line for line in lines if line["event"] == "handler_failed")
    [exception] = failed["exception"]
    assert (exception["exc_type"], exception["exc_value"]) == ("KeyError", "'missing'")
    assert exception["frames"] and all("locals" not in f for f in exception["frames"])
    assert "s3cr3t" not in stderr  # no local variables in a traceback
    uvicorn = next(line for line in lines if line.get("logger") == "uvicorn.error")
    assert uvicorn["exception"][0]["exc_type"] == "KeyError"

    warning = next(line for line in lines if line.get("logger") == "py.warnings")
    assert "a library warning" in warning["event"]
    thread = next(line for line in lines if line["event"].startswith("thread_failed"))
    assert thread["exception"][0]["exc_type"] == "ZeroDivisionError"
    orphan = next(line for line in lines if line.get("logger") == "asyncio")
    assert orphan["exception"][0]["exc_value"] == "never retrieved"
    uncaught = lines[-1]
    assert (uncaught["event"], uncaught["level"]) == ("uncaught_exception", "critical")
    assert uncaught["exception"][0]["exc_type"] == "RuntimeError"


def test_console_format_is_for_people_and_keeps_the_traceback() -> None:
    _, stderr = _run(
        "from shared.runtime.logging import configure_logging, get_logger\n"
        "configure_logging(service='probe', fmt='console')\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    get_logger('probe').exception('boom')\n"
    )
    assert "boom" in stderr and "ZeroDivisionError" in stderr
    assert not stderr.startswith("{")
