"""Run every fuzz target (or the ones named) for a while, keeping a corpus per target.

    .venv/bin/python fuzz/run.py                      # each target 60 s
    .venv/bin/python fuzz/run.py --seconds 3600 tar   # one target an hour

Corpora go to fuzz/corpus/<target>/ (reused on the next run), crash inputs to
fuzz/crashes/<target>-*; the exit status is 1 if any target crashed. Reproduce a crash with
``.venv/bin/python fuzz/fuzz_<target>.py fuzz/crashes/<file>``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = ("reference", "manifest", "tar", "filter_spec", "discovery_request", "signature")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("targets", nargs="*", help=f"any of {', '.join(TARGETS)} (default all)")
    parser.add_argument("--seconds", type=int, default=60, help="time per target")
    parser.add_argument("--jobs", type=int, default=1, help="libFuzzer -jobs/-workers")
    args = parser.parse_args()
    unknown = sorted(set(args.targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    failed = []
    for target in args.targets or TARGETS:
        corpus = HERE / "corpus" / target
        corpus.mkdir(parents=True, exist_ok=True)
        crashes = HERE / "crashes"
        crashes.mkdir(exist_ok=True)
        command = [sys.executable, str(HERE / f"fuzz_{target}.py"), str(corpus),
                   f"-max_total_time={args.seconds}", f"-artifact_prefix={crashes}/{target}-",
                   "-print_final_stats=1"]
        if args.jobs > 1:
            command += [f"-jobs={args.jobs}", f"-workers={args.jobs}"]
        print(f"== {target}: {args.seconds} s", flush=True)
        result = subprocess.run(command, capture_output=True, text=True)
        stats = [line for line in result.stderr.splitlines()
                 if line.startswith(("stat::number_of_executed_units", "Done"))]
        print("\n".join(stats) or result.stderr[-400:], flush=True)
        if result.returncode != 0:
            failed.append(target)
            print(result.stderr[-3000:], flush=True)
    print("crashed: " + (", ".join(failed) if failed else "none"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
