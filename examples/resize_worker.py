"""The image resize worker of the Gearman tutorials ("Kittens!"), in Python with Pillow.

    python examples/resize_worker.py &
    gearman -f resize < large.jpg > thumb.jpg

Each job's workload is an image; the result is a JPEG scaled to fit in 200x150 (aspect ratio kept).
"""

import io
import os

from PIL import Image

from gearman_gateway import Worker

SIZE = (200, 150)


def resize(job):
    image = Image.open(io.BytesIO(job.workload))
    image.thumbnail(SIZE)
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


worker = Worker()
worker.add_servers(os.environ.get("GEARMAN_SERVER", "localhost:4730"))
worker.add_function("resize", resize)

while True:
    worker.work()
