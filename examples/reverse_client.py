"""The "Hello World" client of the Gearman tutorials, in Python (see reverse_worker.py)."""

import os

from gearman_gateway import Client

client = Client()
client.add_servers(os.environ.get("GEARMAN_SERVER", "localhost:4730"))
print(client.do("reverse", "Hello World!").decode())
