"""The "Hello World" worker of the Gearman tutorials, in Python: reverse every workload.

    gearmand -d
    python examples/reverse_worker.py &
    python examples/reverse_client.py          # prints !dlroW olleH

The server comes from GEARMAN_SERVER (host:port[,host:port...]) when set, else localhost:4730.
"""

import os

from gearman_gateway import Worker


def reverse(job):
    return job.workload[::-1]


worker = Worker()
worker.add_servers(os.environ.get("GEARMAN_SERVER", "localhost:4730"))
worker.add_function("reverse", reverse)

while True:
    worker.work()
