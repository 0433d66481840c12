"""The newsletter pipeline's workers; each role runs in processes of its own, as many as needed.

    python examples/newsletter/workers.py newsletter &      # render_nl: one job per user
    python examples/newsletter/workers.py boxes &           # render_box: one job per box
    python examples/newsletter/workers.py send outbox/ &    # send_nl: "sends" a newsletter (a file in outbox/)

A "newsletter" job asks for every box of its user at once (concurrent tasks), waits until all are
rendered, assembles them and submits a background "send_nl" job. A newsletter worker waits for its boxes
while the box workers render them, so the two roles must be different processes.
"""

import json
import os
import sys
from pathlib import Path

from gearman_gateway import Client, Worker

SERVERS = os.environ.get("GEARMAN_SERVER", "localhost:4730")
BOXES = ["statistics", "birthdays", "jobs"]


def render_box(job):
    """One box of one user's newsletter (here: made-up content)."""
    request = json.loads(job.workload)
    user, box = request["user"], request["box"]
    if box == "statistics":
        return f"<h2>Your week</h2><p>{user * 7 % 100} profile visits, {user % 13} new contacts</p>"
    if box == "birthdays":
        return f"<h2>Birthdays</h2><p>{user % 5} of your contacts have a birthday this week</p>"
    return f"<h2>Jobs</h2><p>{user % 9 + 1} offers match your profile</p>"


def newsletter(client):
    def render(job):
        user = int(job.workload)
        boxes = {}
        client.set_complete_fn(lambda task: boxes.__setitem__(task.context, task.data.decode()))
        for box in BOXES:  # all boxes at once: the box workers render them in parallel
            client.add_task("render_box", json.dumps({"user": user, "box": box}), context=box)
        client.run_tasks()  # waits until every box is rendered
        if len(boxes) != len(BOXES):
            raise RuntimeError(f"user {user}: boxes {sorted(set(BOXES) - set(boxes))} failed")
        body = f"<html><body><h1>Weekly statistics for user {user}</h1>" + "".join(boxes[b] for b in BOXES)
        client.do_background("send_nl", json.dumps({"user": user, "html": body + "</body></html>"}))
        return b""

    return render


def send(outbox):
    outbox = Path(outbox)
    outbox.mkdir(parents=True, exist_ok=True)

    def deliver(job):
        mail = json.loads(job.workload)
        path = outbox / f"user-{mail['user']}.html"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(mail["html"])  # a real one hands it to the mail server here
        tmp.replace(path)
        return b""

    return deliver


def main(role, *args):
    worker = Worker(SERVERS)
    if role == "newsletter":
        worker.add_function("newsletter", newsletter(Client(SERVERS, timeout=60)))
    elif role == "boxes":
        worker.add_function("render_box", render_box)
    elif role == "send":
        worker.add_function("send_nl", send(args[0] if args else "outbox"))
    else:
        sys.exit(f"unknown role {role!r}: newsletter, boxes or send")
    while True:
        worker.work()


if __name__ == "__main__":
    main(*sys.argv[1:])
