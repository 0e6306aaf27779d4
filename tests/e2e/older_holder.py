"""An older node for end-to-end tests: the real medvault daemon without the message
types StoreAndProve and ShardsStoredProven (as before issue 17's one-batch proofs) nor
the version 2 proofs' StoreAndProveV2 and ProveShardsV2, so its connections answer them
UNKNOWN_TYPE. Run as `python older_holder.py run ...`."""

from __future__ import annotations

from node.cli.main import main
from protocol.net import messages
from protocol.records.messages import (
    ProveShardsV2,
    ShardsStoredProven,
    StoreAndProve,
    StoreAndProveV2,
)

for unknown in (StoreAndProve, ShardsStoredProven, StoreAndProveV2, ProveShardsV2):
    del messages._REGISTRY[unknown.TYPE]

if __name__ == "__main__":
    main()
