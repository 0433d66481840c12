#!/usr/bin/env python3
"""Coverage-guided fuzzing of every codec (tests/fuzz_targets.py), each for a bounded number of inputs or
time, with atheris (libFuzzer for Python) when it is installed; docs/reliability.md has the figures.

    .venv/bin/python bench/fuzz.py                                   # every codec, 1,000,000 inputs or 10 min each
    .venv/bin/python bench/fuzz.py --codec binary --inputs 1000000
    .venv/bin/python bench/fuzz.py --codec http --seconds 60 --corpus /tmp/fuzz-corpus

Each codec runs in a child process (libFuzzer ends its process when done), instrumented for coverage of
``protocols`` and ``gearman_gateway``, starting from the targets' seeds and the corpus directory, which
keeps every input that found new coverage (give the same ``--corpus`` to continue a run). A crash (an
exception, a failed check) is saved as ``crash-*`` in the corpus directory with its traceback in the
output. Without atheris (it has wheels for few Pythons) a plain loop of seed mutations runs instead,
without coverage guidance; the report says which engine ran.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

#: libFuzzer's largest input; the codecs' limits in the targets are smaller, so every limit is reached.
MAX_LEN = 4096


def have_atheris() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def run_child(codec: str, inputs: int, seconds: float, corpus: Path) -> None:
    """In the child: fuzz one codec until ``inputs`` or ``seconds`` run out (libFuzzer exits the process)."""
    import atheris

    with atheris.instrument_imports(include=["protocols", "gearman_gateway", "tests"]):
        from tests.fuzz_targets import SEEDS, TARGETS
    target = TARGETS[codec]
    corpus.mkdir(parents=True, exist_ok=True)
    for number, seed in enumerate(SEEDS[codec]):
        (corpus / f"seed-{number}").write_bytes(seed)
    atheris.Setup(
        [
            sys.argv[0],
            f"-runs={inputs}",
            f"-max_total_time={int(seconds)}",
            f"-max_len={MAX_LEN}",
            f"-artifact_prefix={corpus}/",
            "-print_final_stats=1",
            "-close_fd_mask=1",  # the targets print nothing; keep libFuzzer's own report on stderr
            str(corpus),
        ],
        target,
    )
    atheris.Fuzz()


def run_codec_atheris(codec: str, inputs: int, seconds: float, corpus: Path) -> dict[str, object]:
    started = time.monotonic()
    before = set(corpus.glob("crash-*"))  # a corpus given again keeps an earlier run's finds
    result = subprocess.run(
        [sys.executable, __file__, "--child", codec, "--inputs", str(inputs), "--seconds", str(seconds),
         "--corpus", str(corpus)],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", result.stderr))
    crashes = sorted(p.name for p in set(corpus.glob("crash-*")) - before)
    if result.returncode != 0 and not crashes:
        crashes = [f"exit status {result.returncode}"]
    if crashes:
        sys.stderr.write(result.stderr[-4000:])
    return {
        "codec": codec,
        "engine": "atheris",
        "inputs": int(stats.get("number_of_executed_units", 0)),
        "seconds": time.monotonic() - started,
        "new_coverage": int(stats.get("new_units_added", 0)),
        "corpus": len(list(corpus.iterdir())),
        "crashes": crashes,
    }


def run_codec_mutating(codec: str, inputs: int, seconds: float, corpus: Path) -> dict[str, object]:
    """No atheris: seeds and corpus inputs mutated at random (bytes flipped, inserted, cut, spliced)."""
    from tests.fuzz_targets import SEEDS, TARGETS

    target = TARGETS[codec]
    pool = list(SEEDS[codec]) + [p.read_bytes() for p in corpus.glob("*") if p.is_file()]
    rng = random.Random(0)
    crashes: list[str] = []
    started = time.monotonic()
    tried = 0
    while tried < inputs and time.monotonic() - started < seconds:
        data = bytearray(rng.choice(pool))
        for _ in range(rng.randint(1, 8)):
            where = rng.randint(0, len(data))
            kind = rng.randrange(4)
            if kind == 0 and data:
                data[min(where, len(data) - 1)] = rng.randrange(256)
            elif kind == 1:
                data[where:where] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
            elif kind == 2:
                del data[where : where + rng.randint(1, 8)]
            else:
                other = rng.choice(pool)
                data[where:] = other[rng.randint(0, len(other)) :]
        tried += 1
        try:
            target(bytes(data[:MAX_LEN]))
        except Exception:
            name = f"crash-{len(crashes)}"
            corpus.mkdir(parents=True, exist_ok=True)
            (corpus / name).write_bytes(bytes(data))
            crashes.append(name)
            traceback.print_exc()
    return {
        "codec": codec, "engine": "mutation (no coverage: atheris missing)", "inputs": tried,
        "seconds": time.monotonic() - started, "new_coverage": 0, "corpus": len(pool), "crashes": crashes,
    }  # fmt: skip


def main() -> int:
    if "--child" in sys.argv:  # before anything imports the code under test, so that atheris instruments it
        child = argparse.ArgumentParser()
        for name in ("--child", "--inputs", "--seconds", "--corpus"):
            child.add_argument(name)
        given = child.parse_args()
        run_child(given.child, int(given.inputs), float(given.seconds), Path(given.corpus))
        return 0
    from tests.fuzz_targets import TARGETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", action="append", choices=sorted(TARGETS), help="repeatable (default: all)")
    parser.add_argument("--inputs", type=int, default=1_000_000, help="inputs per codec (default 1,000,000)")
    parser.add_argument("--seconds", type=float, default=600, help="time limit per codec (default 600)")
    parser.add_argument("--corpus", type=Path, help="corpus directory (default: a new temporary one)")
    parser.add_argument("--engine", choices=["auto", "atheris", "mutation"], default="auto")
    args = parser.parse_args()
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if have_atheris() else "mutation"
    run = run_codec_atheris if engine == "atheris" else run_codec_mutating
    base = args.corpus or Path(tempfile.mkdtemp(prefix="gg-fuzz-"))
    print(f"# bench/fuzz.py: engine {engine}, up to {args.inputs:,} inputs or {args.seconds:g} s per codec, "
          f"corpus {base}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")  # fmt: skip
    print("| codec | inputs tried | seconds | inputs/s | new coverage | corpus | crashes |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    failed = 0
    for codec in args.codec or sorted(TARGETS):
        found = run(codec, args.inputs, args.seconds, base / codec)
        seconds = float(found["seconds"])  # type: ignore[arg-type]
        inputs = int(found["inputs"])  # type: ignore[call-overload]
        crashes = found["crashes"]
        failed += len(crashes)  # type: ignore[arg-type]
        print(
            f"| {codec} | {inputs:,} | {seconds:.0f} | {inputs / max(seconds, 1e-9):,.0f} | "
            f"{found['new_coverage']} | {found['corpus']} | {len(crashes) or 0} {' '.join(crashes)} |",  # type: ignore[arg-type]
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
