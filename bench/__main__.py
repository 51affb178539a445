"""``python -m bench``: run the suite and print the report.

Exit status: 0 when every benchmark ran (a MISS is a finding, not a
failure); 1 when one crashed; 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

from .datasets import default_cache_dir
from .registry import Config, Row
from .report import environment, table, write_json
from .suite import BENCHMARKS, select


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="memctl against raw references, as ratios against targets.",
        epilog="benchmarks: " + ", ".join(b.name for b in BENCHMARKS),
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few repeats (a smoke test)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this benchmark (or every one starting with NAME); repeatable",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also profile memctl's side and print the profiles"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="where big datasets are cached [default: $MEMCTL_BENCH_CACHE or ~/.cache/memctl-bench]",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser.parse_args(argv), parser


def main(argv: list[str] | None = None) -> int:
    args, parser = parse(argv)
    if args.list:
        for bench in BENCHMARKS:
            print(f"{bench.name:16} {bench.summary}")
        return 0
    try:
        chosen = select(args.only)
    except ValueError as error:
        parser.error(str(error))
    out = sys.stdout
    rows: list[Row] = []
    crashed: list[str] = []
    profiles: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="memctl-bench-") as scratch:
        for bench in chosen:
            config = Config(
                quick=args.quick,
                profile=args.profile,
                workdir=Path(scratch) / bench.name,
                cache_dir=args.cache_dir or default_cache_dir(),
            )
            config.workdir.mkdir()
            print(f"running {bench.name}: {bench.summary} ...", file=sys.stderr, flush=True)
            start = time.monotonic()
            try:
                outcome = bench.run(config)
            except Exception:
                traceback.print_exc()
                crashed.append(bench.name)
                continue
            print(f"  done in {time.monotonic() - start:.1f}s", file=sys.stderr, flush=True)
            rows += outcome.rows
            profiles += outcome.profiles

    mode = "quick (smoke test; figures not comparable with a full run)" if args.quick else "full"
    out.write(f"\nmemctl benchmarks, {mode}; {environment()}\n\n")
    table(rows, crashed, out)
    for title, text in profiles:
        out.write(f"\n== profile: {title}\n{text}\n")
    if args.json:
        write_json(args.json, rows, crashed)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
