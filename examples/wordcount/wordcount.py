"""Map/reduce word count: split a text into chunks, count each chunk on whichever worker is free (all chunks
at once with the concurrent task API), then add the partial counts up.

    python examples/wordcount/wordcount.py corpus.txt               # 16 chunks, the top 10 words
    python examples/wordcount/wordcount.py corpus.txt --chunks 64 --top 20

The time the whole count took goes to standard error.
"""

import argparse
import json
import os
import sys
import time
from collections import Counter

from gearman_gateway import Client


def split(text, chunks):
    """About equal pieces, cut at whitespace so no word is split."""
    size = max(1, len(text) // chunks)
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        while end < len(text) and not text[end].isspace():
            end += 1
        yield text[start:end]
        start = end


def word_count(client, text, chunks):
    total = Counter()

    def reduce(task):  # called as each partial count comes back, in whatever order
        total.update(json.loads(task.data))

    def failed(task):
        raise RuntimeError(f"a chunk failed: {task.error or task.state}")

    client.set_complete_fn(reduce)
    client.set_fail_fn(failed)
    for piece in split(text, chunks):
        client.add_task("wordcount_map", piece.encode())
    client.run_tasks()  # sends every chunk, returns when all are counted
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file")
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args()
    with open(args.file, encoding="utf-8") as f:
        text = f.read()
    client = Client(os.environ.get("GEARMAN_SERVER", "localhost:4730"), timeout=600)
    started = time.perf_counter()
    counts = word_count(client, text, args.chunks)
    elapsed = time.perf_counter() - started
    for word, count in counts.most_common(args.top):
        print(f"{count:>10} {word}")
    print(f"{sum(counts.values())} words, {len(counts)} different, in {elapsed:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
