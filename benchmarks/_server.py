"""Run a LoopbackRerankServer in its own process (so its CPU time is not charged to the client).

Usage: ``python benchmarks/_server.py '{"latency": 0.1, "rate_limit": 50}'``. Prints the base URL on one
line, then serves until its standard input closes.
"""

from __future__ import annotations

import json
import sys

from rerankpd.testing import LoopbackRerankServer


def main() -> None:
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    with LoopbackRerankServer(**options) as server:
        print(server.url, flush=True)
        for line in sys.stdin:  # "stats" prints counters; EOF stops the server
            if line.strip() == "stats":
                print(
                    json.dumps(
                        {
                            "requests": len(server.requests),
                            "rate_limited": server.rate_limited,
                            "max_in_flight": server.max_in_flight,
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
