"""The launcher's decisions, without processes: back-off, replicas, ports, output relay."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shared.runtime.settings import Settings
from tools.launcher import Backoff, parse_replicas, relay_output, replica_ports

KNOWN = ("quotes", "orders", "credits", "licensing")


def test_a_process_that_keeps_dying_waits_longer_each_time_up_to_30_seconds() -> None:
    backoff = Backoff()
    delays = [backoff.after_exit(ran_for=2.0) for _ in range(8)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_a_process_that_ran_a_minute_starts_again_after_one_second() -> None:
    backoff = Backoff()
    for _ in range(5):
        backoff.after_exit(ran_for=59.9)
    assert backoff.after_exit(ran_for=60.0) == 1.0
    assert backoff.after_exit(ran_for=0.5) == 2.0


def test_a_crash_loop_never_overflows_the_delay() -> None:
    backoff = Backoff()
    assert {backoff.after_exit(ran_for=0.0) for _ in range(5000)} >= {30.0}


def test_replicas_from_the_flag_and_the_environment_form() -> None:
    assert parse_replicas(["orders=2,credits=2", "licensing=3"], KNOWN) == {
        "quotes": 1,
        "orders": 2,
        "credits": 2,
        "licensing": 3,
    }
    assert parse_replicas([], KNOWN) == dict.fromkeys(KNOWN, 1)
    assert parse_replicas(["quotes=0"], KNOWN)["quotes"] == 0


@pytest.mark.parametrize("spec", ["mailer=2", "orders", "orders=11", "orders=-1", "orders=two"])
def test_replicas_refuses_what_it_cannot_run(spec: str) -> None:
    with pytest.raises(ValueError, match="replicas"):
        parse_replicas([spec], KNOWN)


def test_replica_k_listens_ten_ports_further_on_both_listeners() -> None:
    settings = Settings(orders_port=8102, _env_file=None)
    assert replica_ports(settings, "orders", 0) == (8102, 8202)
    assert replica_ports(settings, "orders", 2) == (8122, 8222)
    assert replica_ports(settings.model_copy(update={"orders_admin_port": 9000}), "orders", 1) == (
        8112,
        9010,
    )


def _relayed(output: bytes, replica: int | None, tmp_path: Path) -> list[dict[str, object]]:
    sink = tmp_path / "out"
    with sink.open("wb") as out:
        relay_output(io.BytesIO(output), service="orders", replica=replica, out_fd=out.fileno())
    return [json.loads(line) for line in sink.read_text().splitlines()]


def test_the_relay_keeps_json_lines_and_wraps_anything_else(tmp_path: Path) -> None:
    output = (
        b'{"event": "service_started", "service": "orders"}\n'
        b"Traceback (most recent call last):\n"
        b"\n"
        b'  File "x.py", line 1\n'
        b'["not", "an", "object"]\n'
        b"no newline at the end"
    )
    lines = _relayed(output, None, tmp_path)
    assert lines[0] == {"event": "service_started", "service": "orders"}
    assert [line["line"] for line in lines[1:]] == [
        "Traceback (most recent call last):",
        '  File "x.py", line 1',
        '["not", "an", "object"]',
        "no newline at the end",
    ]
    assert {(line["event"], line["service"]) for line in lines[1:]} == {
        ("process_output", "orders")
    }


def test_the_relay_names_the_replica_of_a_service_run_more_than_once(tmp_path: Path) -> None:
    lines = _relayed(b'{"event": "service_started"}\nplain\n', 1, tmp_path)
    assert [line["replica"] for line in lines] == [1, 1]
