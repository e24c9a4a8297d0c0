"""Benchmark: command-line start-up against ``python -c pass`` in the same run.

Runs, interleaved round by round so that load drifting on a shared machine
weighs on all alike, each as a fresh process with output to a pipe:

* ``python -c pass`` — the interpreter's own start-up, the baseline;
* ``apexcal --help`` — the console script printing the top-level help;
* ``apexcal config check config.example.toml`` — loading and validating the
  documented example configuration;
* the floor of anything that validates a config with pydantic: a fresh
  interpreter importing pydantic and validating one one-field model (which
  builds a schema and loads pydantic's plugin machinery, as any model does);
* the same floor as ``config check`` runs it (no plugin discovery, no cyclic
  garbage collection: :func:`apexcal.cli.front.lean_process`).

Prints the median and the fastest wall time of each, the CPU time (user +
system, from the children's resource usage) and each command's ratio to the
baseline.  ``--imports`` also lists, for each command, the slowest imports
(cumulative, from ``python -X importtime``) and the number of modules loaded.

apexcal's own modules are compiled to ``.pyc`` first, as installing a wheel
does (an editable install under ``PYTHONDONTWRITEBYTECODE`` would otherwise
compile them from source in every process).

Run: ``.venv/bin/python bench/startup.py [--rounds 20] [--imports] [--before OTHER/.venv/bin]
[--before-tree CHECKOUT]``; ``--before-tree`` measures another checkout's
source (e.g. ``git archive COMMIT src config.example.toml | tar -x -C DIR``)
with this installation's script and libraries.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYDANTIC_FLOOR = "from pydantic import BaseModel, Field\nclass M(BaseModel):\n    x: int = Field(1)\nM.model_validate({})"
LEAN_FLOOR = "from apexcal.cli.front import lean_process\nlean_process()\n" + PYDANTIC_FLOOR

Run = tuple[list[str], dict[str, str] | None]


def commands(before: Path | None = None, before_tree: Path | None = None) -> dict[str, Run]:
    """Name → (argv, environment or None) of each measured process (the apexcal script next to this interpreter).

    ``before`` is the ``bin`` directory of another installation (e.g. a virtualenv
    of an older commit), ``before_tree`` another checkout's tree run with this
    installation: their two commands are measured in the same rounds.
    """
    script = str(Path(sys.executable).with_name("apexcal"))
    older: dict[str, Run] = {}
    if before is not None:
        old = str(before / "apexcal")
        # The example of that checkout (bin → .venv → checkout): the config's keys change over time.
        example = before.resolve().parent.parent / "config.example.toml"
        older = {
            "before: apexcal --help": ([old, "--help"], None),
            "before: config check": ([old, "config", "check", str(example)], None),
        }
    if before_tree is not None:
        compileall.compile_dir(before_tree / "src", quiet=1)
        env = {**os.environ, "PYTHONPATH": str(before_tree / "src")}
        example = before_tree / "config.example.toml"
        older = {
            "before: apexcal --help": ([script, "--help"], env),
            "before: config check": ([script, "config", "check", str(example)], env),
        }
    return {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "apexcal --help": ([script, "--help"], None),
        "apexcal config check": ([script, "config", "check", str(ROOT / "config.example.toml")], None),
        "floor: one pydantic model": ([sys.executable, "-c", PYDANTIC_FLOOR], None),
        "floor, lean process": ([sys.executable, "-c", LEAN_FLOOR], None),
        **older,
    }


def run_once(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of ``argv``; fails if it does not exit 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=False, env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def imports(argv: list[str], top: int, env: dict[str, str] | None = None) -> tuple[int, list[tuple[int, str]]]:
    """Modules imported by ``argv`` and its ``top`` slowest imports (cumulative µs, name)."""
    python, *rest = argv
    if python != sys.executable:  # the console script: run its entry point under this interpreter
        rest = ["-c", "from apexcal.cli import main; main()", *rest]
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *rest], capture_output=True, text=True, check=False, env=env
    )
    rows: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        rows.append((int(cumulative), name.strip()))
    return len(rows), sorted(rows, reverse=True)[:top]


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--imports", action="store_true", help="list each command's slowest imports")
    parser.add_argument(
        "--before", type=Path, help="bin directory of another installation to measure in the same rounds"
    )
    parser.add_argument(
        "--before-tree", type=Path, help="another checkout's tree (src/, config.example.toml) to measure"
    )
    args = parser.parse_args()
    compileall.compile_dir(ROOT / "src", quiet=1)  # as installing a wheel does
    runs = commands(args.before, args.before_tree)
    for argv, env in runs.values():  # warm the file cache
        run_once(argv, env)
    walls: dict[str, list[float]] = {name: [] for name in runs}
    cpus: dict[str, list[float]] = {name: [] for name in runs}
    load = os.getloadavg()
    for _ in range(args.rounds):
        for name, (argv, env) in runs.items():
            wall, cpu = run_once(argv, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    load_after = os.getloadavg()
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} cores, {args.rounds} interleaved rounds, "
        f"load average {load[0]:.1f} → {load_after[0]:.1f}"
    )
    base_wall = statistics.median(walls["python -c pass"])
    base_cpu = statistics.median(cpus["python -c pass"])
    print(f"{'command':<26} {'median ms':>10} {'min ms':>8} {'CPU ms':>8} {'× pass (wall)':>14} {'× pass (CPU)':>13}")
    for name in runs:
        wall = statistics.median(walls[name])
        cpu = statistics.median(cpus[name])
        print(
            f"{name:<26} {wall * 1e3:>10.1f} {min(walls[name]) * 1e3:>8.1f} {cpu * 1e3:>8.1f} "
            f"{wall / base_wall:>13.2f}× {cpu / base_cpu:>12.2f}×"
        )
    if args.imports:
        for name, (argv, env) in runs.items():
            count, slowest = imports(argv, 12, env)
            print(f"\n{name}: {count} modules imported; slowest (cumulative ms):")
            for micros, module in slowest:
                print(f"  {micros / 1e3:8.1f}  {module}")


if __name__ == "__main__":
    main()
