"""``memctl record`` as a whole process against ``python -c pass``.

What a shell script or a non-Python agent pays per event: interpreter start,
memctl's imports, argument parsing, opening the database, one durable append.
The reference is the same interpreter doing nothing, so the ratio is memctl's
cost in units of "starting Python". Runs alternate one for one.
"""

from __future__ import annotations

import contextlib
import io
import subprocess

from .measure import alternate, clean_env, median, paired_ratios, run_process, spread
from .profiling import import_times, profile_call
from .registry import Benchmark, Config, Figure, Outcome, Row, Target

NAME = "cli-record"
SESSION = "s_bench_record"


def run(config: Config) -> Outcome:
    rounds = config.pick(30, 8)
    db = config.workdir / "record.db"
    env = clean_env()
    record = [str(config.memctl), "--db", str(db), "record", "-s", SESSION]
    baseline = [str(config.python), "-c", "pass"]
    text = "Reading utils.py to see what the helpers do"

    # Create and migrate the database first: the benchmark is recording into
    # an existing one. Then one untimed run of each to warm the file cache.
    subprocess.run([*record, "first"], env=env, check=True, stdout=subprocess.DEVNULL)
    run_process([*record, text], env)
    run_process(baseline, env)

    ours, ref = alternate(
        lambda: run_process([*record, text], env), lambda: run_process(baseline, env), rounds
    )
    outcome = Outcome()
    mine, base = median(ours) * 1000, median(ref) * 1000
    outcome.rows.append(
        Row(
            bench=NAME,
            what="`memctl record -s S TEXT` vs `python -c pass`",
            memctl=Figure(mine, "ms"),
            reference=Figure(base, "ms"),
            target=Target("<=", 8),
            note=(
                f"{rounds} alternating runs each; memctl {spread(ours, 1000)} ms, "
                f"python {spread(ref, 1000)} ms, per-pair ratio "
                f"{spread(paired_ratios(ours, ref), fmt='{:.1f}')}; "
                f"memctl's own cost ~{mine - base:.0f} ms above the interpreter"
            ),
        )
    )
    if config.profile:
        outcome.profiles.append(
            (
                f"{NAME}: imports of one `memctl record` (-X importtime)",
                import_times([str(config.python), str(config.memctl), *record[1:], text], env),
            )
        )
        outcome.profiles.append(
            (f"{NAME}: one record in-process after imports (cumulative)", _in_process(config))
        )
    return outcome


def _in_process(config: Config) -> str:
    """cProfile the command itself with imports already paid, via typer's runner path."""
    from memctl.cli import app

    db = config.workdir / "record.db"
    args = ["--db", str(db), "record", "-s", SESSION, "profiled"]

    def once() -> None:
        # The command prints the seq; keep it out of the report.
        with contextlib.redirect_stdout(io.StringIO()):
            app(args=args, prog_name="memctl", standalone_mode=False)

    once()  # lazy imports inside the command happen here, not in the profile
    return profile_call(once, sort="cumtime", top=30)


BENCHMARK = Benchmark(NAME, "`memctl record` process vs `python -c pass` (target <= 8x)", run)
