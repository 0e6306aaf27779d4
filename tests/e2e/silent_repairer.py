"""An adversarial member for end-to-end tests: the real medvault daemon, certified and
honest in everything but repair, which it never does (issue 13: a coordinator that keeps
records unrepaired). Run as `python silent_repairer.py run --data-dir DIR`."""

from __future__ import annotations

from node.cli.main import main
from node.records.repair import Repairer, RepairReport, Survey


async def never_repair(
    self: Repairer, record_id: bytes, survey: Survey | None = None
) -> RepairReport:
    """Survey like an honest holder (so it stays a live holder, in its rank) and stop."""
    health = (survey or await self.survey(record_id, verify=False)).health
    return RepairReport(health, note="silently ignored")


if __name__ == "__main__":
    Repairer.repair = never_repair  # type: ignore[method-assign]
    main()
