"""Start-up time of the command line: ``rewardalign --help``, ``--version`` and each ``COMMAND --help``.

Each invocation runs ``rewardalign.cli.main`` in a fresh Python process (``python -c``, as the console script
does), timed from the parent; the child reports which heavy libraries it imported. Prints a Markdown table.

    python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "transformers", "datasets", "accelerate", "numpy", "pandas", "pyarrow")
PROBE = """
import sys
from rewardalign.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("\\nimported: " + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def invocations() -> list[list[str]]:
    """Every invocation measured: the top level, then each command's help."""
    from rewardalign.cli import COMMANDS, DATA_COMMANDS

    return ([["--help"], ["--version"]] + [[name, "--help"] for name in COMMANDS]
            + [["data", name, "--help"] for name in DATA_COMMANDS])


def measure(argv: list[str], repeats: int) -> tuple[float, list[str]]:
    """(median wall seconds over ``repeats`` fresh processes, heavy modules the last one imported)."""
    times, imported = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                              capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        line = proc.stderr.strip().splitlines()[-1]
        imported = [m for m in line.partition("imported:")[2].strip().split(",") if m]
    return statistics.median(times), imported


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="processes per invocation (the median is shown)")
    args = parser.parse_args()
    rows = ["| invocation | wall s (median) | torch imported | heavy modules imported |", "|---|---:|---|---|"]
    worst = 0.0
    for argv in invocations():
        seconds, imported = measure(argv, args.repeats)
        worst = max(worst, seconds)
        rows.append(f"| `rewardalign {' '.join(argv)}` | {seconds:.2f} | {'yes' if 'torch' in imported else 'no'} "
                    f"| {', '.join(imported) or '-'} |")
    print("\n".join(rows))
    print(f"\nslowest: {worst:.2f} s ({args.repeats} processes each, Python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
