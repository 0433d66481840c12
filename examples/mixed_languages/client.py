"""A Python client driving a pipeline of workers written in other languages: PHP reverses, Perl upper-cases.

python examples/mixed_languages/client.py "Hello World!"        # prints !DLROW OLLEH
"""

import os
import sys

from gearman_gateway import Client

client = Client(os.environ.get("GEARMAN_SERVER", "localhost:4730"), timeout=30)
text = sys.argv[1] if len(sys.argv) > 1 else "Hello World!"
reversed_by_php = client.do("php_reverse", text)
print(client.do("perl_upper", reversed_by_php).decode())
