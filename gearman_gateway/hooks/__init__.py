"""Event hooks: tell other systems when a job ends or a queue grows, without their polling (docs/monitoring.md).

``config`` reads the YAML ``monitoring.hooks`` list; ``events`` turns a job's end into the JSON event and
decides which hooks want it (a ``JobObserver``, cheap on the job path); ``outbox`` delivers: an HTTP POST
through Twisted's own client, or a background Gearman job, with retries, off the job path.
"""
