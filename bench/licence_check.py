"""Throughput and latency of the appliance licence check, against a bare endpoint.

Starts the system as `make run` does (launcher, four processes, embedded store), makes
a customer through a real sale (quote, order, proof, review, bind, the token from
``customer.notification``), registers an appliance, then, from a second process, puts
a bounded closed-loop load on ``GET /v1/appliances/{id}/license`` (secret check, store
lookup, allocation, Ed25519 signature) and, as the baseline measured in the same run,
on ``GET /health`` of the same licensing process (same server stack, no work).

It also measures the registration refusal for a known email with a wrong token against
an unknown email (L2: the difference must be noise), with the attempt limits raised for
this run only.

    python -m bench.licence_check [--seconds 10] [--connections 16] [--probes 400]
    python -m bench.licence_check load URL PATH [--header H] ...   (the load process)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.common import PROOF, percentile
from testkit.broker import delete_namespace
from testkit.contract_client import ContractClient, read_users
from testkit.processes import LaunchedSystem, launched_system

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


# --- the load process: a lean HTTP/1.1 keep-alive client, so the client is not the limit --


async def _one_connection(
    host: str, port: int, request: bytes, until: float, samples: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            samples.append((time.perf_counter() - started) * 1000)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


async def _load(url: str, path: str, headers: list[str], seconds: float, connections: int) -> Any:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *headers, "", ""]
    request = "\r\n".join(lines).encode()
    warm: list[float] = []
    await asyncio.gather(
        *[
            _one_connection(host, port, request, time.perf_counter() + 1.0, warm, [])
            for _ in range(connections)
        ]
    )
    samples: list[float] = []
    errors: list[int] = []
    started = time.perf_counter()
    await asyncio.gather(
        *[
            _one_connection(host, port, request, started + seconds, samples, errors)
            for _ in range(connections)
        ]
    )
    elapsed = time.perf_counter() - started
    return {
        "requests": len(samples),
        "errors": len(errors),
        "seconds": elapsed,
        "rps": len(samples) / elapsed,
        "p50": statistics.median(samples),
        "p90": percentile(samples, 90),
        "p99": percentile(samples, 99),
        "max": max(samples),
    }


def load_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench.licence_check load")
    parser.add_argument("url")
    parser.add_argument("path")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    result = asyncio.run(_load(args.url, args.path, args.header, args.seconds, args.connections))
    print(json.dumps(result))


def run_load(
    url: str, path: str, headers: list[str], seconds: float, connections: int
) -> dict[str, float]:
    """The load runs in a second process: the measuring client never shares the server's."""
    command = [sys.executable, "-m", "bench.licence_check", "load", url, path]
    command += [f"--header={h}" for h in headers]
    command += [f"--seconds={seconds}", f"--connections={connections}"]
    done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    result: dict[str, float] = json.loads(done.stdout)
    return result


# --- the set-up: a real sale, a registered appliance ---------------------------------------


async def sold_appliance(system: LaunchedSystem) -> tuple[str, str, str, str]:
    """(email, token, appliance id, appliance secret) after a real sale and registration."""
    licensing = system.url("licensing")
    async with (
        ContractClient(
            AMQP_URL, system.namespace, read_users(system.data_dir / "broker-users.json")
        ) as client,
        httpx.AsyncClient(timeout=10) as http,
    ):
        order = await client.ok(
            "order.place",
            {
                "reseller_id": "bench",
                "space": "reseller",
                "edition": "premium",
                "billing": "annual",
            },
        )
        order_id = order["order_id"]
        proof = await http.post(
            f"{system.url('orders')}/v1/orders/{order_id}/proofs",
            headers={"Authorization": f"Bearer {system.api_token}", "X-Reseller-Id": "bench"},
            files={"file": ("p.pdf", PROOF, "application/pdf")},
        )
        assert proof.status_code == 201, proof.text
        await client.ok(
            "proof.review", {"order_id": order_id, "decision": "accept", "reviewer": "bench"}
        )
        email = "load@bench.example"
        await client.ok(
            "plan.bind", {"reseller_id": "bench", "order_id": order_id, "customer_email": email}
        )
        note = await client.wait_event("customer.notification", lambda b: b["order_id"] == order_id)
        token = note["registration_token"]
        registered = await http.post(
            f"{licensing}/v1/appliances/register",
            json={"email": email, "registration_token": token, "appliance_id": "xoa-load"},
        )
        assert registered.status_code == 200, registered.text
        secret = registered.json()["appliance_secret"]
        checked = await http.get(
            f"{licensing}/v1/appliances/xoa-load/license",
            headers={"Authorization": f"Bearer {secret}"},
        )
        assert checked.json()["status"] == "active", checked.text
    return email, token, "xoa-load", secret


async def enumeration_probe(system: LaunchedSystem, email: str, probes: int) -> dict[str, float]:
    """Median time of a refused registration: a customer's email with a wrong token vs an
    email that is no customer's, each probed repeatedly as an attacker would, interleaved
    so that drift affects both alike."""
    url = f"{system.url('licensing')}/v1/appliances/register"
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(probes):
            for kind in ("known", "unknown"):
                body = {
                    "email": email if kind == "known" else "nobody@bench.example",
                    "registration_token": uuid.uuid4().hex + uuid.uuid4().hex,
                    "appliance_id": "xoa-probe",
                }
                started = time.perf_counter()
                response = await http.post(url, json=body)
                times[kind].append((time.perf_counter() - started) * 1000)
                assert response.status_code == 401, response.text
    return {kind: statistics.median(samples) for kind, samples in times.items()}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--probes", type=int, default=400)
    args = parser.parse_args()
    # This run only: the probe makes many refused attempts on purpose.
    os.environ["REGISTRATION_ATTEMPTS_PER_SOURCE"] = "1000000"
    os.environ["REGISTRATION_ATTEMPTS_PER_EMAIL"] = "1000000"
    with tempfile.TemporaryDirectory() as tmp, launched_system(AMQP_URL, Path(tmp)) as system:
        email, _, appliance_id, secret = asyncio.run(sold_appliance(system))
        url = system.url("licensing")
        baseline = run_load(url, "/health", [], args.seconds, args.connections)
        check = run_load(
            url,
            f"/v1/appliances/{appliance_id}/license",
            [f"Authorization: Bearer {secret}"],
            args.seconds,
            args.connections,
        )
        probe = asyncio.run(enumeration_probe(system, email, args.probes))
        asyncio.run(delete_namespace(AMQP_URL, system.namespace))
    print(f"load: {args.connections} keep-alive connections, {args.seconds:.0f} s per target,")
    print("      from a second process, loopback, after 1 s of warm-up")
    for name, result in (("baseline GET /health", baseline), ("GET licence check", check)):
        print(
            f"{name}: {result['requests']:.0f} requests, {result['errors']:.0f} errors, "
            f"{result['rps']:.0f} req/s, p50={result['p50']:.2f} ms "
            f"p90={result['p90']:.2f} ms p99={result['p99']:.2f} ms max={result['max']:.1f} ms"
        )
    print(
        f"ratio licence check / baseline: throughput {check['rps'] / baseline['rps']:.2f}x, "
        f"p99 {check['p99'] / baseline['p99']:.1f}x"
    )
    print(
        f"refused registration, median of {args.probes}: known email + wrong token "
        f"{probe['known']:.3f} ms, unknown email {probe['unknown']:.3f} ms "
        f"(difference {abs(probe['known'] - probe['unknown']) * 1000:.0f} us)"
    )


if __name__ == "__main__":
    main()
