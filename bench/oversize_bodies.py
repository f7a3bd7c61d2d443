"""Memory of the licensing process under oversize JSON bodies (issue: hardened edges).

Before the body limits, 10 concurrent 50 MB bodies to ``POST /v1/appliances/register``
took the licensing process from 110 MB to 1 GB of resident memory. Starts the system as
`make run` does (launcher, four processes, embedded store), finds the licensing process,
and reads its resident set (``VmRSS``) and peak (``VmHWM``) from /proc before and after
``--concurrency`` bodies of ``--megabytes`` MB each, sent at once on separate
connections: once streamed (chunked, no ``Content-Length``), once with the length
declared. Each client writes its body while reading, and stops at the answer (as curl
does; httpx writes the whole body first and, on a body this large, sees the connection
closed instead of the 413). It prints what each client got and how much of its body it
had written by then, then the figures and their ratios. A measurement, not a test:
Linux only (/proc).

    python -m bench.oversize_bodies [--concurrency 10] [--megabytes 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from testkit.broker import delete_namespace
from testkit.processes import LaunchedSystem, launched_system

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MB = 1024 * 1024
CHUNK = 64 * 1024


def memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` (resident now) and ``VmHWM`` (resident peak since start), in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def _response(reader: asyncio.StreamReader) -> str:
    """The status and error code of the response, read as soon as it comes."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode()
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    body = json.loads(await reader.readexactly(length))
    return f"{status} {body['error']['code']}"


async def one_body(url: str, size: int, declared: bool) -> tuple[str, int]:
    """One client, as an attacker writes it: sends ``size`` bytes of body (chunked, or
    with the length declared) while reading, and stops when the answer comes. Returns
    the answer (status and error code, or the error that ended the exchange) and the
    bytes of body it wrote."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    framing = f"Content-Length: {size}" if declared else "Transfer-Encoding: chunked"
    writer.write(
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n".encode()
    )
    answer = asyncio.create_task(_response(reader))
    sent = 0
    chunk = b"{" + b" " * (CHUNK - 1)
    try:
        while sent < size and not answer.done():
            writer.write(chunk if declared else b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            if sent >= size and not declared:
                writer.write(b"0\r\n\r\n")  # the last chunk: the body is complete
            await writer.drain()
    except ConnectionError:
        pass  # the server closed the connection: its answer, if any, is being read
    try:
        result = await asyncio.wait_for(answer, 10)
    except (OSError, asyncio.IncompleteReadError, TimeoutError) as error:
        result = type(error).__name__
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return result, sent


async def flood(system: LaunchedSystem, pid: int, *, count: int, size: int, declared: bool) -> None:
    url = f"{system.url('licensing')}/v1/appliances/register"
    peak = 0
    stop = asyncio.Event()

    async def sample() -> None:  # the resident set while the bodies arrive
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, memory_kb(pid)["VmRSS"])
            await asyncio.sleep(0.02)

    before = memory_kb(pid)
    sampler = asyncio.create_task(sample())
    started = time.perf_counter()
    results = await asyncio.gather(*(one_body(url, size, declared) for _ in range(count)))
    elapsed = time.perf_counter() - started
    stop.set()
    await sampler
    await asyncio.sleep(0.5)  # let the server close the connections it refused
    after = memory_kb(pid)
    kind = "Content-Length declared" if declared else "streamed, no Content-Length"
    answers = Counter(answer for answer, _ in results)
    sent = [n for _, n in results]
    print(f"{count} concurrent {size // MB} MB bodies, {kind}: {elapsed:.2f} s")
    print(f"  answers: {dict(answers)}")
    print(
        f"  body each client wrote before it had the answer: "
        f"max {max(sent) / 1024:.0f} KB of {size // 1024} KB"
    )
    print(
        f"  licensing RSS before {before['VmRSS'] / 1024:.1f} MB, during (max sampled) "
        f"{peak / 1024:.1f} MB, after {after['VmRSS'] / 1024:.1f} MB; "
        f"ratio after/before {after['VmRSS'] / before['VmRSS']:.2f}, "
        f"peak/before {max(peak, after['VmRSS']) / before['VmRSS']:.2f}; "
        f"process peak (VmHWM) {before['VmHWM'] / 1024:.1f} -> {after['VmHWM'] / 1024:.1f} MB"
    )


async def warm_up(system: LaunchedSystem) -> None:
    """A few ordinary requests first, so that 'before' is a process that has served."""
    async with httpx.AsyncClient(timeout=10) as http:
        for n in range(20):
            await http.post(
                f"{system.url('licensing')}/v1/appliances/register",
                json={
                    "email": f"warm{n}@bench.example",
                    "registration_token": "wrong",
                    "appliance_id": "xoa-warm",
                },
            )


async def measure(system: LaunchedSystem, *, count: int, size: int) -> None:
    pid = system.pid("licensing")  # as the launcher reports it (launcher.json)
    assert pid is not None, "licensing is not running"
    await warm_up(system)
    for declared in (False, True):
        await flood(system, pid, count=count, size=size, declared=declared)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--megabytes", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, launched_system(AMQP_URL, Path(tmp)) as system:
        asyncio.run(measure(system, count=args.concurrency, size=args.megabytes * MB))
        asyncio.run(delete_namespace(AMQP_URL, system.namespace))


if __name__ == "__main__":
    main()
