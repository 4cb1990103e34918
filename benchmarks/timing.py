"""Shared by the benchmarks: the timing protocol (blocks of consecutive calls per runner, spread over rounds) and
the Markdown result table."""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence


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
