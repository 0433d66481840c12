"""A Python worker serving clients in other languages: "py_title" title-cases its workload (UTF-8 text).

python examples/mixed_languages/worker.py &
"""

import os

from gearman_gateway import Worker


def title(job):
    return job.workload.decode("utf-8").title()


worker = Worker(os.environ.get("GEARMAN_SERVER", "localhost:4730"))
worker.add_function("py_title", title)
while True:
    worker.work()
