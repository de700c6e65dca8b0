"""A plain Python program using requests, which takes its proxies from the environment
(HTTP_PROXY/HTTPS_PROXY, then ALL_PROXY; socks5h:// needs PySocks, `requests[socks]`).
Prints the body on stdout; a failure goes to stderr with exit code 1.

    python3 requests_probe.py http://host:port/path
"""

import sys

import requests

url = sys.argv[1]
print(f"requests {requests.__version__}: proxies {requests.utils.get_environ_proxies(url)}", file=sys.stderr)
try:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    sys.stdout.write(response.text)
except Exception as error:  # noqa: BLE001 - any failure is the answer
    print(f"requests probe failed: {error!r}", file=sys.stderr)
    sys.exit(1)
