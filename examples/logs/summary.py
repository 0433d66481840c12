"""The summary of what the log workers collected: requests and bytes per status, top paths, top hosts.

python examples/logs/summary.py logs.sqlite3
"""

import sqlite3
import sys

QUERIES = {
    "requests by status": "SELECT status, sum(requests), sum(bytes) FROM hits GROUP BY status ORDER BY status",
    "top paths": "SELECT path, sum(requests), sum(bytes) FROM hits GROUP BY path ORDER BY 2 DESC, 1 LIMIT 5",
    "top hosts": "SELECT host, sum(requests), sum(bytes) FROM hits GROUP BY host ORDER BY 2 DESC, 1 LIMIT 5",
}


def main(path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    total, size = db.execute("SELECT coalesce(sum(requests), 0), coalesce(sum(bytes), 0) FROM hits").fetchone()
    rejected = db.execute("SELECT count(*) FROM rejected").fetchone()[0]
    print(f"{total} requests, {size} bytes, {rejected} lines rejected")
    for title, query in QUERIES.items():
        print(f"\n{title}:")
        for key, requests, size in db.execute(query):
            print(f"  {key!s:<30} {requests:>8} requests {size:>12} bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "logs.sqlite3")
