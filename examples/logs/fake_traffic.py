"""Apache "common" log lines of made-up traffic, to feed the log workers without an Apache.

    python examples/logs/fake_traffic.py 1000 > access.log          # 1000 lines at once
    python examples/logs/fake_traffic.py 0 --rate 20 >> access.log  # 20 lines a second, until Ctrl-C

The same count always gives the same lines (a fixed random seed).
"""

import argparse
import random
import sys
import time

PATHS = ["/", "/index.html", "/kittens.jpg", "/search?q=gearman", "/about", "/missing.gif"]
STATUS = {"/missing.gif": 404}


def lines(count, seed=2009):
    rng = random.Random(seed)
    n = 0
    while count == 0 or n < count:
        host = f"10.0.{rng.randrange(4)}.{rng.randrange(1, 20)}"
        path = rng.choices(PATHS, weights=[30, 20, 15, 10, 5, 3])[0]
        status = STATUS.get(path, 200)
        size = rng.randrange(200, 50000) if status == 200 else 209
        stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(1248000000 + n))
        yield f'{host} - - [{stamp}] "GET {path} HTTP/1.1" {status} {size}\n'
        n += 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", type=int, help="lines to write (0: for ever)")
    parser.add_argument("--rate", type=float, default=0, help="lines per second (0: as fast as possible)")
    args = parser.parse_args()
    for line in lines(args.count):
        sys.stdout.write(line)
        if args.rate:
            sys.stdout.flush()
            time.sleep(1 / args.rate)
