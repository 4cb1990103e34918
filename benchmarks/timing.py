"""Shared by the benchmarks: the timing protocol (blocks of consecutive calls per runner, spread over rounds), its
command-line flags, logging, and the Markdown result table."""
from __future__ import annotations

import argparse
import logging
import time
from typing import Callable, Dict, List, Optional, Sequence


def add_timing_arguments(parser: argparse.ArgumentParser, batches: str, warmup: int = 2, runs: int = 9) -> None:
    """--batches, --threads, --warmup, --runs, --rounds and --markdown, checked by `parse_timing_arguments`."""
    parser.add_argument("--batches", default=batches, help="comma-separated batch sizes")
    parser.add_argument("--threads", type=int, default=2, help="compute threads for torch and paddle")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls per runner before timing")
    parser.add_argument("--runs", type=int, default=runs, help="timed calls per runner (the median is reported)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds the timed calls are spread over")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown to FILE")


def csv_list(text: str, convert: Callable = str) -> list:
    """"a, b," -> [convert("a"), convert("b")]."""
    return [convert(item.strip()) for item in text.split(",") if item.strip()]


def parse_timing_arguments(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """Parse, turn --batches into a list of ints and refuse values the protocol cannot run with."""
    args = parser.parse_args(argv)
    args.batches = csv_list(args.batches, int)
    if not args.batches or min(args.batches) < 1 or args.threads < 1 or args.runs < 1 or args.warmup < 0 \
            or not 1 <= args.rounds <= args.runs:
        parser.error("--batches, --threads and --runs must be >= 1, --warmup >= 0, 1 <= --rounds <= --runs")
    return args


def setup_logging(*quiet: str) -> None:
    """Messages only, on stderr; the libraries' INFO chatter (paddlemix_eva, paddlenlp, and `quiet`) silenced."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    for noisy in ("paddlemix_eva", "paddlenlp", *quiet):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def time_in_rounds(
    runners: Dict[str, Callable[[], object]], warmup: int, runs: int, rounds: int
) -> Dict[str, List[float]]:
    """`runs` timed calls per runner, spread over `rounds` rounds; in each round every runner gets one untimed
    call and then its consecutive timed calls. Back-to-back calls of one framework measure its steady state
    (alternating single calls measured both frameworks ~50% slower here: each evicts the other's working set),
    while the rounds spread slow phases of a shared machine over all runners alike."""
    for run in runners.values():
        for _ in range(warmup):
            run()
    times: Dict[str, List[float]] = {name: [] for name in runners}
    per_round = [runs // rounds + (1 if r < runs % rounds else 0) for r in range(rounds)]
    for count in per_round:
        for name, run in runners.items():
            run()
            for _ in range(count):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return times


def markdown_table(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[str]],
                   path: Optional[str] = None) -> str:
    """The rows as a Markdown table (`align`: "l" or "r" per column), also written to `path` if given."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    table = "\n".join(lines)
    if path:
        with open(path, "w") as f:
            f.write(table + "\n")
    return table
