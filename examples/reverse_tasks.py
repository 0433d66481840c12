"""Several jobs at once with the concurrent task API: callbacks, then run_tasks() (see reverse_worker.py).

Results come back in whatever order the workers finish them; the classic API promises no order.
"""

import os

from gearman_gateway import Client


def completed(task):
    print(task.data.decode())


client = Client()
client.add_servers(os.environ.get("GEARMAN_SERVER", "localhost:4730"))
client.add_task("reverse", "Hello World!")
client.add_task_high("reverse", "Hello High!")
client.add_task_low("reverse", "Hello Low!")
client.set_complete_fn(completed)
client.run_tasks()  # blocks until all three are done
