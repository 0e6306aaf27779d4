"""Prints a small simulation's outcome as JSON (run in subprocesses by the test)."""

from __future__ import annotations

import json
import sys

from tests.sim.test_dht_sim import outcome

if __name__ == "__main__":
    print(json.dumps(outcome(int(sys.argv[1]))))
