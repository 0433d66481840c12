"""Map step of the word count: count the words of one chunk of text.

    python examples/wordcount/map_worker.py &          # one per core

Function "wordcount_map": the workload is UTF-8 text, the result is JSON {word: count}. Words are runs of
letters (and apostrophes inside them), lower-cased.
"""

import json
import os
import re
from collections import Counter

from gearman_gateway import Worker

WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def count_words(text):
    return Counter(WORD.findall(text.lower()))


def wordcount_map(job):
    return json.dumps(count_words(job.workload.decode("utf-8", "replace")))


if __name__ == "__main__":
    worker = Worker(os.environ.get("GEARMAN_SERVER", "localhost:4730"))
    worker.add_function("wordcount_map", wordcount_map)
    while True:
        worker.work()
