"""The nightly cron job: one background "newsletter" job per user, sent to the job server in batches.

    python examples/newsletter/cron.py 10000                # users 1..10000, batches of 2000

Each batch is added with add_task_background and sent with one run_tasks(), which returns once the server
has queued every job of the batch: the cron job is done in seconds, however long the rendering takes.
"""

import argparse
import os
import time

from gearman_gateway import Client


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("users", type=int)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()
    client = Client(os.environ.get("GEARMAN_SERVER", "localhost:4730"), timeout=60)
    started = time.perf_counter()
    for first in range(1, args.users + 1, args.batch):
        for user in range(first, min(first + args.batch, args.users + 1)):
            # the unique key makes a second run of the same night's cron job add nothing while jobs are queued
            client.add_task_background("newsletter", str(user), unique=f"newsletter-{user}")
        client.run_tasks()
    print(f"{args.users} newsletter jobs queued in {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
