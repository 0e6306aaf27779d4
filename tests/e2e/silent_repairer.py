"""An adversarial member for end-to-end tests: the real medvault daemon, certified and
honest in everything, until a file named `silent` appears in its data directory (it is
compromised); from then on it never repairs (issue 13: a coordinator that keeps records
unrepaired). Run as `python silent_repairer.py run --data-dir DIR ...`."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from node.cli.main import main
from node.records.repair import Repairer, RepairReport, Survey

honest_repair = Repairer.repair


def silenced(data_dir: Path) -> bool:
    return (data_dir / "silent").exists()


def repair_until_silenced(
    data_dir: Path,
) -> Callable[[Repairer, bytes, Survey | None], Awaitable[RepairReport]]:
    async def repair(
        self: Repairer, record_id: bytes, survey: Survey | None = None
    ) -> RepairReport:
        """Survey like an honest holder (so it stays a live holder, in its rank) and stop."""
        if not silenced(data_dir):
            return await honest_repair(self, record_id, survey)
        health = (survey or await self.survey(record_id, verify=False)).health
        return RepairReport(health, note="silently ignored")

    return repair


if __name__ == "__main__":
    data_dir = Path(sys.argv[sys.argv.index("--data-dir") + 1])
    Repairer.repair = repair_until_silenced(data_dir)  # type: ignore[method-assign,assignment]
    main()
