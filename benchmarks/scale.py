"""Scale benchmarks: spectralmatch against the machine's I/O limit, memory against image
size and count, workers, and a Dask cluster against threads, in one command.

    python benchmarks/scale.py [--work DIR] [--repeat N] [--only SECTION,...]

It drives the shared benchmark harness (``../shared/bench`` beside the clone, or the
folder in ``$BENCH``): ``prepare.py`` makes the cases it lacks (``--scale N --size S
--no-truth``, up to 1.2 GB each, under ``DIR/bench-cases``; kept for the next run) and
``run.py`` times every command in a fresh process, alternating with the command it is
compared with. Every ratio below is of two commands measured in the same run. Results go
to ``DIR/scale.jsonl`` (one line per run) and ``DIR/scale.md`` (the tables, also printed).

Sections (all by default):

- ``floor``: ``spectralmatch match`` (global + local, the defaults) against
  ``runners/rewrite_mt.py`` (a plain copy of the same pixels on every core: the I/O
  limit) on scale-9x3000, scale-16x3000 and scale-4x6000; and ``--no-local`` on
  scale-9x3000.
- ``many``: the defaults against ``rewrite_mt.py`` on the same 81 megapixels in 9 and
  in 36 images (scale-9x3000, scale-36x1500), and on 100 and 225 images of 400 px: the
  cost of each image and overlap beyond its pixels, and memory against image count;
  the last two again with the statistics cache on (new in each run), as users run it.
- ``memory``: peak memory of the defaults against image size (4 x 2000, 4 x 6000 and
  2 x 12000 px) and image count (4, 9 and 16 images of 3000 px), with wall time per
  megapixel against the total pixels.
- ``workers``: the defaults pinned to one core (``taskset -c 0``) against both cores,
  and ``rewrite.py`` (one core) against ``rewrite_mt.py``, on scale-9x3000.
- ``dask``: ``--scheduler local:2`` (a LocalCluster of 2 worker processes) against the
  threads, on scale-9x3000 (needs ``pip install 'spectralmatch[dask]'``).

The package's bytecode is compiled first, as ``pip install`` leaves it (a checkout
installed with ``pip install -e .`` where ``PYTHONDONTWRITEBYTECODE`` is set would compile
it in every run). Run nothing else on the machine meanwhile. The whole set takes about
20 minutes on 2 cores, the first time longer (the cases are made once).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MATCH = (
    f"{shlex.quote(sys.executable)} -m spectralmatch match {{input}} -o {{output}} --no-cache -q"
)
#: The command as users run it, with the statistics cache on (its default), the cache
#: new in every run (in the output folder, which the harness empties).
MATCH_CACHE_ON = (
    f"{shlex.quote(sys.executable)} -m spectralmatch match {{input}} -o {{output}} -q "
    "--cache-dir {output}/statistics-cache"
)
SECTIONS = ("floor", "many", "memory", "workers", "dask")


def bench_folder() -> Path:
    """The shared harness, or exit with what is missing and how to point at it."""
    folder = Path(os.environ.get("BENCH", ROOT.parent / "shared" / "bench"))
    if not (folder / "run.py").is_file() or not (folder / "prepare.py").is_file():
        sys.exit(
            f"benchmarks/scale.py needs the shared benchmark harness (run.py, prepare.py, "
            f"runners/) and its Landsat data, looked for in {folder}: put the shared/ "
            "folder beside this clone, or set BENCH=/path/to/shared/bench"
        )
    return folder


def compile_package() -> None:
    """Compile the package's bytecode where it is imported from, as ``pip install`` does:
    a checkout installed in place under ``PYTHONDONTWRITEBYTECODE`` would otherwise be
    compiled again by every run (0.1 s that an installed package does not take)."""
    spec = importlib.util.find_spec("spectralmatch")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("benchmarks/scale.py needs spectralmatch installed: pip install -e .")
    for folder in spec.submodule_search_locations:
        compileall.compile_dir(folder, quiet=1)


class Bench:
    """Makes cases and runs the harness on them, collecting the runs' JSON lines."""

    def __init__(self, harness: Path, work: Path, repeat: int) -> None:
        self.harness, self.work, self.repeat = harness, work, repeat
        self.cases = work / "bench-cases"
        self.results = work / "scale.jsonl"

    def case(self, count: int, size: int) -> str:
        name = f"scale-{count}x{size}"
        if not (self.cases / name / "case.json").is_file():
            print(f"making {name} (once)...", flush=True)
            subprocess.run(
                [sys.executable, self.harness / "prepare.py", self.cases, "--scale", str(count),
                 "--size", str(size), "--no-truth"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
        return name

    def run(self, case: str, label: str, command: str, label_b: str = "", compare: str = ""):
        """Run ``command`` (and ``compare``, alternately) on ``case``; their runs."""
        arguments = [
            sys.executable, self.harness / "run.py", "--cases", self.cases, "--only", case,
            "--out", self.work / "bench-out", "--repeat", str(self.repeat),
            "--json", self.results, "--label", label,
        ]  # fmt: skip
        if compare:
            arguments += ["--compare", compare, "--label-b", label_b]
        before = self._lines()
        log = self.work / "scale.log"
        with open(log, "a") as output:
            subprocess.run(
                [*arguments, "--", *shlex.split(command)], check=True, stdout=output,
                stderr=subprocess.STDOUT, cwd=self.work,
            )  # fmt: skip
        runs = [json.loads(line) for line in self._lines()[len(before) :]]
        failed = [r for r in runs if r["rc"] != 0 or not r["integrity"]["passed"]]
        if failed:
            sys.exit(f"{failed[0]['label']} failed on {case}: see {failed[0]['log']}")
        return runs

    def _lines(self) -> list[str]:
        return self.results.read_text().splitlines() if self.results.exists() else []


def median(runs: list[dict], label: str, key: str) -> float:
    values = sorted(r[key] for r in runs if r["label"] == label)
    return values[len(values) // 2]


def rss(runs: list[dict], label: str) -> float:
    return median(runs, label, "peak_tree_rss_mb")


def runner(bench: Bench, name: str) -> str:
    """The command of one of the harness's reference runners."""
    return f"{shlex.quote(sys.executable)} {bench.harness / 'runners' / name} {{input}} {{output}}"


FLOOR_HEADER = [
    "| case | match | wall s | rewrite_mt s | ratio | CPU s (ours / copy) | peak MB |",
    "| --- | --- | --- | --- | --- | --- | --- |",
]


def against_floor(bench: Bench, case: str, label: str, command: str, name: str) -> str:
    """A row of ``command`` (labelled ``label``) against ``rewrite_mt.py`` on ``case``."""
    runs = bench.run(case, label, command, "rewrite_mt", runner(bench, "rewrite_mt.py"))
    ours, floor = median(runs, label, "wall_s"), median(runs, "rewrite_mt", "wall_s")
    cpu = median(runs, label, "cpu_s"), median(runs, "rewrite_mt", "cpu_s")
    return (
        f"| {case} | {name} | {ours:.2f} | {floor:.2f} | **{ours / floor:.2f}** | "
        f"{cpu[0]:.1f} / {cpu[1]:.1f} | {rss(runs, label):.0f} |"
    )


def floor_section(bench: Bench) -> list[str]:
    rows = [
        against_floor(bench, case, "spectralmatch", MATCH + options, name)
        for case, options, name in [
            (bench.case(9, 3000), "", "defaults"),
            (bench.case(16, 3000), "", "defaults"),
            (bench.case(4, 6000), "", "defaults"),
            (bench.case(9, 3000), " --no-local", "--no-local"),
        ]
    ]
    # what no two-pass method can beat: every pixel read once, then the copy
    two_pass = f"{shlex.quote(sys.executable)} {ROOT / 'benchmarks' / 'two_pass_floor.py'}"
    rows.append(
        against_floor(
            bench,
            bench.case(9, 3000),
            "two-pass",
            two_pass + " {input} {output}",
            "two-pass floor (read all, then copy)",
        )
    )
    return [*FLOOR_HEADER, *rows]


def many_section(bench: Bench) -> list[str]:
    """The same 81 megapixels in 9 and in 36 images, then 100 and 225 small images: what
    each image and each overlap costs beyond its pixels."""
    cases = [(9, 3000), (36, 1500), (100, 400), (225, 400)]
    rows = [
        against_floor(bench, bench.case(count, size), "spectralmatch", MATCH, "defaults")
        for count, size in cases
    ]
    # the cache on, as by default: the outputs' completion records name the model
    rows += [
        against_floor(
            bench, bench.case(count, size), "cache-on", MATCH_CACHE_ON, "defaults, cache on"
        )
        for count, size in cases[2:]
    ]
    # worker processes, which the statistics of many small images favour
    rows += [
        against_floor(
            bench, bench.case(count, size), "processes", MATCH + " --processes", "--processes"
        )
        for count, size in cases[2:]
    ]
    return [*FLOOR_HEADER, *rows]


def memory_section(bench: Bench) -> list[str]:
    rows = []
    for count, size in [(4, 2000), (4, 6000), (2, 12000), (4, 3000), (9, 3000), (16, 3000)]:
        runs = bench.run(bench.case(count, size), "spectralmatch", MATCH)
        wall = median(runs, "spectralmatch", "wall_s")
        pixels = count * size * size / 1e6
        rows.append(
            f"| {count} x {size} px | {pixels:.0f} | {wall:.2f} | {1000 * wall / pixels:.1f} | "
            f"{rss(runs, 'spectralmatch'):.0f} |"
        )
    return [
        "| images | megapixels | wall s | ms per megapixel | peak MB |",
        "| --- | --- | --- | --- | --- |",
        *rows,
    ]


def workers_section(bench: Bench) -> list[str]:
    case = bench.case(9, 3000)
    # one core: the process pinned to it (GDAL's compression threads share it too)
    runs = bench.run(case, "1-core", "taskset -c 0 " + MATCH, "2-cores", MATCH)
    copies = bench.run(
        case, "rewrite", runner(bench, "rewrite.py"), "rewrite_mt", runner(bench, "rewrite_mt.py")
    )
    rows = []
    for label, one, two, measured in [
        ("spectralmatch match", "1-core", "2-cores", runs),
        ("copy (rewrite / rewrite_mt)", "rewrite", "rewrite_mt", copies),
    ]:
        a, b = median(measured, one, "wall_s"), median(measured, two, "wall_s")
        rows.append(f"| {label} | {a:.2f} | {b:.2f} | **{a / b:.2f}** |")
    return [
        f"| {case} | 1 core s | 2 cores s | speed-up |",
        "| --- | --- | --- | --- |",
        *rows,
    ]


def dask_section(bench: Bench) -> list[str]:
    case = bench.case(9, 3000)
    runs = bench.run(case, "threads", MATCH, "dask", MATCH + " --scheduler local:2")
    threads, dask = median(runs, "threads", "wall_s"), median(runs, "dask", "wall_s")
    return [
        f"| {case} | wall s | peak MB (all processes) |",
        "| --- | --- | --- |",
        f"| threads (2) | {threads:.2f} | {rss(runs, 'threads'):.0f} |",
        f"| LocalCluster, 2 worker processes | {dask:.2f} ({dask / threads:.2f}x) | "
        f"{rss(runs, 'dask'):.0f} |",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "bench-work", help="cases and outputs")
    parser.add_argument("--repeat", type=int, default=3, help="runs per command (medians)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    args = parser.parse_args(argv)
    sections = args.only.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(
            f"unknown section {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}"
        )
    bench = Bench(bench_folder(), args.work.resolve(), args.repeat)
    compile_package()
    args.work.mkdir(parents=True, exist_ok=True)
    makers = {
        "floor": floor_section,
        "many": many_section,
        "memory": memory_section,
        "workers": workers_section,
        "dask": dask_section,
    }
    report = []
    for section in sections:
        print(f"== {section}", flush=True)
        table = makers[section](bench)
        print("\n".join(table), flush=True)
        report += [f"## {section}", "", *table, ""]
    (args.work / "scale.md").write_text("\n".join(report))


if __name__ == "__main__":
    main()
