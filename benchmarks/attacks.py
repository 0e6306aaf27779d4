"""The fake-storage attack, measured on whole simulated nodes (seeded, virtual time).

    python -m benchmarks.attacks [--nodes 8] [--liars 3] [--puts 12] [--seed 1] [--json]

`--liars` of the nodes acknowledge every block and claim every index, keeping
nothing (node/sim/adversary.py, "fake-storage"). One honest node puts
`--puts` records; then the liars go offline and every record the put called
successful is read back through the real get path, and `check` (audited)
is asked about each while the liars are still up. Before storage proofs
(issue 13's review on real daemons, 3 liars of 8): 4 of 12 "successful"
puts were unreadable and `check` said healthy. Here a put is recorded only
with `happy` proven holders; one that cannot find them fails and records
nothing.
"""

from __future__ import annotations

import random
from typing import Any

import trio

from benchmarks.harness import emit_json, parser, print_table
from benchmarks.simbench import Setup, node_config, run_virtual, site_name
from benchmarks.stats import Scheme
from node.records.errors import RecordError
from node.sim.adversary import lie_on
from node.sim.network import SimNetwork
from node.sim.nodes import SimNodes, StoredRecord

RECORD_BYTES = 300_000


async def fake_storage(nodes: int, liars: int, puts: int, seed: int) -> dict[str, Any]:
    setup = Setup(nodes=nodes, sites=nodes, records=0)
    scheme = Scheme(3, 5)
    config = node_config(setup, scheme, repair=False)
    rng = random.Random(seed)
    async with trio.open_nursery() as nursery:
        sim = SimNodes(SimNetwork(seed), config, rng)
        for number in range(nodes):
            await sim.add(nursery, site_name(number))
        cheats = sim.members[1 : 1 + liars]
        for member in cheats:
            lie_on(member.node, "fake-storage")
        writer = sim.members[0]
        stored: list[StoredRecord] = []
        refused = 0
        for _ in range(puts):
            try:
                stored.append(await sim.put(writer, rng.randbytes(RECORD_BYTES)))
            except RecordError:
                refused += 1
        await sim.known_everywhere(stored)
        claimed = unproven = healthy = 0
        for record in stored:
            health = await writer.node.repairer.check(record.record_id, verify=False)
            claimed += sum(1 for m in cheats if m.node.shards.holdings.indices(record.record_id)[0])
            unproven += sum(len(indices) for indices in health.unproven.values())
            healthy += health.healthy
        for member in cheats:
            sim.fail(member)
        readable = sum([await sim.read(writer, record, 600.0) for record in stored])
        nursery.cancel_scope.cancel()
    return {
        "nodes": nodes,
        "liars": liars,
        "puts": puts,
        "recorded": len(stored),
        "refused": refused,
        "readable_without_liars": readable,
        "unreadable_recorded": len(stored) - readable,
        "liar_claims": claimed,
        "claims_failing_audit": unproven,
        "check_healthy": healthy,
    }


def main() -> None:
    args_parser = parser(__doc__ or "")
    args_parser.add_argument("--nodes", type=int, default=8)
    args_parser.add_argument("--liars", type=int, default=3)
    args_parser.add_argument("--puts", type=int, default=12)
    args = args_parser.parse_args()
    figures = run_virtual(
        args.seed, lambda: fake_storage(args.nodes, args.liars, args.puts, args.seed)
    )
    print_table(["figure", "value"], sorted(figures.items()))
    emit_json(figures, args.json)


if __name__ == "__main__":
    main()
