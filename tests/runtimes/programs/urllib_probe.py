"""A plain Python program: urllib.request.urlopen with the proxies urllib reads from the
environment (http_proxy/HTTP_PROXY, https_proxy, no_proxy; no SOCKS). Prints the body on stdout;
a failure goes to stderr with exit code 1.

    python3 urllib_probe.py http://host:port/path
"""

import sys
import urllib.request

url = sys.argv[1]
print(f"urllib: proxies from the environment {urllib.request.getproxies()}", file=sys.stderr)
try:
    with urllib.request.urlopen(url, timeout=10) as response:
        sys.stdout.write(response.read().decode())
except Exception as error:  # noqa: BLE001 - any failure is the answer
    print(f"urllib probe failed: {error!r}", file=sys.stderr)
    sys.exit(1)
