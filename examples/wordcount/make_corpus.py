"""A large made-up English-like text for the word count (the same text for the same size).

python examples/wordcount/make_corpus.py 20 > corpus.txt          # about 20 MB
"""

import random
import sys

WORDS = (
    "the of and to a in is it you that he was for on are with as his they be at one have this from or had by "
    "word but what some we can out other were all there when up use your how said an each she which do their "
    "time if will way about many then them write would like so these her long make thing see him two has look "
    "more day could go come did number sound no most people my over know water than call first who may down side "
    "gearman worker client job server queue kitten thumbnail newsletter map reduce log"
).split()


def main(megabytes):
    rng = random.Random(2009)
    weights = [1 / (rank + 1) for rank in range(len(WORDS))]  # Zipf-like: a few words are very common
    out = sys.stdout
    written = 0
    while written < megabytes * 1_000_000:
        line = " ".join(rng.choices(WORDS, weights, k=12)).capitalize() + ".\n"
        out.write(line)
        written += len(line)


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 20)
