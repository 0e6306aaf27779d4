"""Stealth grants of one record: which count, which are revoked, who co-owns sharing.

A stealth grant (`sgrant`, StealthGrantBody) names no person: its one-time
key P stands for the grantee, so `grant_for(record, P)`, the read gate and
permits work as for any grantee, and `RevokeBody(record, P)` revokes that
grant ("revocation names the grant, not the person"). A grant with
`patient` set makes P a co-owner of the record's sharing: entries authored
by P (a feed of its own) may add stealth grants to the record and revoke
some of its grants.

The rules, a pure function of the entries naming one record (so the fold and
its incremental form share them and cannot disagree):

- Authority flows from the owner down a tree. Round 0: the owner's stealth
  grants. Round d+1: grants authored by a co-owner P made in round d whose
  grant is current. A grant by anyone else (a key that holds no current
  co-owner grant of this record, however it signs) is refused.
- Within a round, grants are taken in (seq, hash) order; a grant whose index
  or P the record already has, or whose P is a long-term grantee of the
  record (an old `grant` by the owner), is refused with that reason. A
  refused grant claims nothing: a stranger cannot squat an index.
- A co-owner grant is current unless revoked by the owner or by the co-owner
  who made it. So a co-owner's authority depends only on the rounds above
  hers, and the rule has exactly one answer (no cycles: nobody revokes her
  own maker).
- Revokes by a co-owner P (current): any stealth grant of the record that is
  not a co-owner grant, and co-owner grants that P made. Never the owner's
  own grant (an old-format grant), never an old-format grant at all (the
  owner revokes those), never her own grant or her maker's. Anything else by
  a non-owner is refused with the reason.
- The acts of a co-owner whose grant is revoked are void, before and after:
  the ledger has no order between feeds (timestamps are the author's word,
  and a stolen key could backdate). Her shares end with her; her revokes
  lapse (the owner revokes again what must stay revoked).
- A revoked stealth grant stays revoked: granting again makes a new P.
- A tombstone ends every grant; the tree is still computed (ever-granted).
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from dataclasses import dataclass, field

from protocol.ledger.entries import Entry, RevokeBody, StealthGrantBody
from protocol.ledger.state_types import GrantInfo

NOT_CO_OWNER = "stealth grant by a key that holds no current co-owner grant on the record"
REVOKER_NOT_CO_OWNER = "revoke by a key that is neither the owner nor a current co-owner"
DUPLICATE_INDEX = "duplicate stealth grant index {index} on the record"
DUPLICATE_KEY = "duplicate one-time key: the record already has a grant with it"
OLD_GRANTEE = "one-time key is already an old-format grantee of the record"
NOT_STEALTH = "a co-owner revokes only stealth grants of the record"
NOT_HER_CO_OWNER = "a co-owner revokes only the co-owner grants she made"


@dataclass
class StealthSlice:
    """One record's stealth grants as the rules decide them."""

    grants: dict[bytes, GrantInfo] = field(default_factory=dict)  # P -> current grant
    ever: set[bytes] = field(default_factory=set)  # P of every grant that counted
    rejected: dict[bytes, str] = field(default_factory=dict)  # entry hash -> reason
    indices: set[int] = field(default_factory=set)  # indices taken by grants that count


def _order(entry: Entry) -> tuple[int, bytes]:
    return entry.seq, entry.hash


def stealth_slice(
    owner: bytes,
    entries: Iterable[Entry],
    *,
    old_grantees: Set[bytes],
    tombstoned: bool,
) -> StealthSlice:
    """Decide one record's stealth grants from the `sgrant` and `revoke` entries naming
    it (others are ignored); `old_grantees`: keys the owner granted in the old format."""
    result = StealthSlice()
    sgrants: dict[bytes, list[Entry]] = {}  # author -> its sgrant entries
    revokes: list[Entry] = []
    revokers: dict[bytes, set[bytes]] = {}  # P -> authors of revokes naming it
    for entry in entries:
        body = entry.body
        if isinstance(body, StealthGrantBody):
            sgrants.setdefault(entry.author, []).append(entry)
        elif isinstance(body, RevokeBody):
            revokes.append(entry)
            revokers.setdefault(body.grantee, set()).add(entry.author)
    counted, co_owners = _tree(owner, sgrants, revokers, old_grantees, result)
    revoked = {p for p, who in revokers.items() if owner in who and p in counted}
    for entry in revokes:
        if entry.author == owner:
            continue  # the owner's revokes: of its stealth grants (above) or old ones
        reason = _co_owner_revoke_problem(entry, counted, co_owners)
        if reason is not None:
            result.rejected[entry.hash] = reason
        else:
            revoked.add(entry.body.grantee)  # type: ignore[union-attr]
    result.ever = set(counted)
    if not tombstoned:
        for p, entry in counted.items():
            body = entry.body
            assert isinstance(body, StealthGrantBody)
            if p not in revoked:
                result.grants[p] = GrantInfo(
                    body.record_id, p, body.grant, body.expires_at, entry.hash,
                    index=body.index, patient=body.patient,
                )  # fmt: skip
    return result


def _tree(
    owner: bytes,
    sgrants: dict[bytes, list[Entry]],
    revokers: dict[bytes, set[bytes]],
    old_grantees: Set[bytes],
    result: StealthSlice,
) -> tuple[dict[bytes, Entry], set[bytes]]:
    """The grants that count (P -> entry) and the current co-owners, round by round
    from the owner; refusals go to `result.rejected`, taken indices to `result.indices`."""
    counted: dict[bytes, Entry] = {}
    co_owners: set[bytes] = set()
    frontier = [owner]
    while frontier:
        layer = sorted((e for a in frontier for e in sgrants.pop(a, ())), key=_order)
        frontier = []
        for entry in layer:
            body = entry.body
            assert isinstance(body, StealthGrantBody)
            p = body.one_time
            reason = _grant_problem(body, old_grantees, counted, result.indices)
            if reason is not None:
                result.rejected[entry.hash] = reason
                continue
            counted[p] = entry
            result.indices.add(body.index)
            if body.patient and not revokers.get(p, set()) & {owner, entry.author}:
                co_owners.add(p)
                frontier.append(p)
    for entries_of_stranger in sgrants.values():
        for entry in entries_of_stranger:
            result.rejected[entry.hash] = NOT_CO_OWNER
    return counted, co_owners


def _grant_problem(
    body: StealthGrantBody,
    old_grantees: Set[bytes],
    counted: dict[bytes, Entry],
    indices: set[int],
) -> str | None:
    if body.one_time in old_grantees:
        return OLD_GRANTEE
    if body.one_time in counted:
        return DUPLICATE_KEY
    if body.index in indices:
        return DUPLICATE_INDEX.format(index=body.index)
    return None


def _co_owner_revoke_problem(
    entry: Entry, counted: dict[bytes, Entry], current_co_owners: set[bytes]
) -> str | None:
    body = entry.body
    assert isinstance(body, RevokeBody)
    if entry.author not in current_co_owners:
        return REVOKER_NOT_CO_OWNER
    target = counted.get(body.grantee)
    if target is None:
        return NOT_STEALTH
    target_body = target.body
    assert isinstance(target_body, StealthGrantBody)
    if target_body.patient and target.author != entry.author:
        return NOT_HER_CO_OWNER
    return None


def next_index(taken: Set[int]) -> int:
    """The smallest index no grant of the record uses (what a writer picks)."""
    index = 0
    while index in taken:
        index += 1
    return index
