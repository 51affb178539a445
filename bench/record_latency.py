"""How soon a streamed line is durable: ``memctl record``'s 100 ms promise, measured.

A feeder writes JSON lines into ``memctl record``'s stdin and notes when each
write returned; memctl prints each line's seq once its batch has committed,
and the harness notes when each seq arrived. The difference is the line's
time from the pipe to durable. Two paces: an agent's (200 lines a second,
where the promise applies) and a burst written as fast as memctl reads it
(shown for information: a burst faster than storage queues in the pipe,
and ``memctl.stream`` trades batch size against this delay). The first
line goes in alone and the rest follow once its seq is out: the promise is
about a running ``record``, and lines written while the process starts wait
for its start-up, which ``cli-record`` measures. On SQLite,
the default database; there is no reference to run, so the target is on
memctl's own p99.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

from .measure import clean_env
from .registry import Benchmark, Config, Figure, Outcome, Row, Target

NAME = "record-latency"


def _lines(count: int) -> list[bytes]:
    return [
        json.dumps({"role": "user", "content": f"step {n}: read the file and report back"}).encode()
        + b"\n"
        for n in range(count)
    ]


def _latencies(config: Config, db: str, lines: list[bytes], pace: float | None) -> list[float]:
    """Seconds from each line's write to its seq on stdout, in input order; ``pace`` lines a
    second, or all at once."""
    process = subprocess.Popen(
        [str(config.memctl), "--db", db, "record", "-s", f"s_latency_{len(lines)}_{pace}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=clean_env(),
    )
    assert process.stdin is not None and process.stdout is not None
    written = [0.0] * len(lines)
    running = threading.Event()  # the first line's seq is out: memctl is reading

    def feed() -> None:
        assert process.stdin is not None
        fd = process.stdin.fileno()
        try:
            os.write(fd, lines[0])
            written[0] = time.perf_counter()
            # The rest once memctl runs: lines written during its start-up
            # would wait for the start-up (``cli-record``'s figure), not for
            # storage.
            running.wait()
            start = time.perf_counter()
            for index, line in enumerate(lines[1:]):
                if pace is not None:
                    delay = start + index / pace - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                os.write(fd, line)
                written[index + 1] = time.perf_counter()
        except BrokenPipeError:
            pass  # memctl exited early: reported below from its exit status
        finally:
            process.stdin.close()

    feeder = threading.Thread(target=feed)
    feeder.start()
    acknowledged: list[float] = []
    for _ in process.stdout:
        acknowledged.append(time.perf_counter())
        running.set()
    running.set()  # memctl exited without a line acknowledged: let the feeder finish
    process.stdout.close()
    feeder.join()
    if process.wait() != 0 or len(acknowledged) != len(lines):
        raise RuntimeError(f"memctl record exited {process.returncode}")
    return [done - sent for done, sent in zip(acknowledged, written, strict=True)]


def _quantile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def run(config: Config) -> Outcome:
    db = str(config.workdir / "latency.db")
    # The database exists first, as for an agent that has been recording.
    subprocess.run(
        [str(config.memctl), "--db", db, "record", "-s", "s_first", "first"],
        env=clean_env(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    outcome = Outcome()
    for label, count, pace, target in (
        ("200 lines a second", config.pick(600, 200), 200.0, Target("<=", 100, on="memctl")),
        ("a burst, as fast as memctl reads", config.pick(50_000, 5_000), None, None),
    ):
        latencies = _latencies(config, db, _lines(count), pace)
        first, times = latencies[0], sorted(latencies[1:])  # [0] waits for the start-up
        p50, p99 = _quantile(times, 0.5) * 1000, _quantile(times, 0.99) * 1000
        outcome.rows.append(
            Row(
                bench=NAME,
                what=f"line written -> seq printed, p99, {label} (SQLite)",
                memctl=Figure(p99, "ms"),
                reference=None,
                target=target,
                note=(
                    f"{label}: {count:,} lines; median {p50:.1f} ms, p99 {p99:.1f} ms, "
                    f"slowest {times[-1] * 1000:.1f} ms; the first line, written before"
                    f" memctl started, {first * 1000:.0f} ms, left out"
                ),
            )
        )
    return outcome


BENCHMARK = Benchmark(
    NAME, "`memctl record` streaming: time from a line's write to its seq (p99 <= 100 ms)", run
)
