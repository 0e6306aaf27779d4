"""The status page's HTML: a pure function of what the node reported.

No JavaScript and nothing loaded from elsewhere (the page's Content-Security-Policy
forbids both): inline CSS only, every value passed through html.escape, so a site
name, a peer's address or a logged field cannot inject markup.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from enum import Enum

from node.logs import LoggedEvent
from node.records.upkeep import PassSummary
from protocol.control.replies import StatusReply

MAX_PEER_ROWS = 200  # a larger routing table is summarised beyond this
REFRESH_S = 60  # the browser reloads the page (a meta refresh: no script)


class Reach(Enum):
    ANSWERED = "answered"
    SILENT = "no answer"  # asked, and the call failed or timed out
    PENDING = "not yet"  # still asking when the page was drawn


@dataclass(frozen=True)
class PeerView:
    public_key: bytes
    node_id: bytes
    address: str
    site: str | None
    reach: Reach
    connected: bool


@dataclass(frozen=True)
class StatusView:
    status: StatusReply
    listen: str  # where the node's P2P transport listens
    http_listen: str
    peers: list[PeerView]
    peers_asked_ms: int  # wall clock of the peers' answers shown
    peer_wait_s: float
    last_pass: PassSummary | None
    repair_interval_s: float
    warnings: list[LoggedEvent]
    now_ms: int


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


def count(number: int, noun: str) -> str:
    """'1 record', '2 records'."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def utc(wall_ms: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(wall_ms / 1000))


def _rows(pairs: list[tuple[str, str]]) -> str:
    """A definition list; values are HTML already (escaped by the caller)."""
    return "".join(f"<dt>{esc(name)}</dt><dd>{value}</dd>" for name, value in pairs)


def _badge(text: str, good: bool) -> str:
    return f'<span class="badge {"ok" if good else "bad"}">{esc(text)}</span>'


def _identity(view: StatusView) -> str:
    s = view.status
    advertised = esc(s.address)
    if view.listen != s.address:
        advertised += f' <span class="muted">(listens on {esc(view.listen)})</span>'
    return _rows(
        [
            ("node id", f'<code class="wrap">{esc(s.node_id.hex())}</code>'),
            ("public key", f'<code class="wrap">{esc(s.public_key.hex())}</code>'),
            ("site", esc(s.site)),
            ("peer address", advertised),
            ("HTTP API", esc(view.http_listen)),
            ("uptime", esc(duration(s.uptime_s))),
            ("erasure code", esc(f"k={s.k} of n={s.n}, happy={s.happy}")),
        ]
    )


def _records(view: StatusView) -> str:
    s, last = view.status, view.last_pass
    pairs = [
        ("in the ledger", esc(s.records)),
        ("held here", esc(s.records_held)),
    ]
    if last is None:
        pairs.append(("health", '<span class="muted">no repair pass yet</span>'))
    else:
        pairs += [
            ("healthy", _badge(str(last.healthy), True)),
            ("below n holders", _badge(str(last.below_n), last.below_n == 0)),
            ("a site's loss away", _badge(str(last.site_unsafe), last.site_unsafe == 0)),
            ("unreadable", _badge(str(last.unreadable), last.unreadable == 0)),
            ("survey failed", _badge(str(last.skipped), last.skipped == 0)),
        ]
    return _rows(pairs)


def _store(view: StatusView) -> str:
    s = view.status
    if s.store_quota_bytes:
        share = min(100.0, 100.0 * s.store_used_bytes / s.store_quota_bytes)
        use = (
            f"{esc(size(s.store_used_bytes))} of {esc(size(s.store_quota_bytes))}"
            f' ({share:.0f}%)<div class="bar"><div style="width:{share:.1f}%"></div></div>'
        )
    else:
        use = f"{esc(size(s.store_used_bytes))} (no quota)"
    orphans = f"{esc(s.orphan_pieces)} pieces, {esc(size(s.orphan_bytes))}"
    if s.orphan_pieces:
        orphans += ' <span class="muted">(<code>medvault gc</code> reclaims them)</span>'
    return _rows([("used", use), ("orphans", orphans)])


def _ledger(view: StatusView) -> str:
    s = view.status
    return _rows(
        [
            ("entries", esc(s.ledger_entries)),
            (
                "caught up",
                _badge("yes" if s.ledger_caught_up else "not yet", s.ledger_caught_up),
            ),
            ("revoked nodes", esc(s.revoked_nodes)),
            ("connections", esc(s.connections)),
            ("routing contacts", esc(s.contacts)),
        ]
    )


def _repair(view: StatusView) -> str:
    last = view.last_pass
    pairs = [("passes", esc(view.status.repair_passes))]
    if last is None:
        pairs.append(
            (
                "last pass",
                f'<span class="muted">none yet (every {view.repair_interval_s:g} s)</span>',
            )
        )
    else:
        ago = duration((view.now_ms - last.ended_ms) / 1000)
        pairs += [
            ("last pass ended", f"{esc(utc(last.ended_ms))} ({esc(ago)} ago)"),
            ("took", esc(duration(last.duration_s))),
            ("records surveyed", esc(last.surveyed)),
            ("repairs run", esc(last.repaired)),
        ]
    return _rows(pairs)


def _reach_cell(peer: PeerView) -> str:
    if peer.reach is Reach.ANSWERED:
        return _badge("reachable", True)
    if peer.reach is Reach.SILENT:
        return _badge("no answer", False)
    return '<span class="muted">no answer yet</span>'


def _peers(view: StatusView) -> str:
    answered = sum(1 for p in view.peers if p.reach is Reach.ANSWERED)
    head = (
        f"<p>Asked at {esc(utc(view.peers_asked_ms))}: {esc(count(len(view.peers), 'peer'))}"
        f" in the routing table, {esc(answered)} answered within {view.peer_wait_s:g} s"
        " (answers are reused for a few seconds).</p>"
    )
    if not view.peers:
        return head + '<p class="muted">No peers known yet.</p>'
    rows = "".join(
        "<tr>"
        f'<td><code title="{esc(p.public_key.hex())}">{esc(p.node_id.hex()[:16])}</code></td>'
        f"<td>{esc(p.site) if p.site else '<span class=muted>?</span>'}</td>"
        f"<td><code>{esc(p.address)}</code></td>"
        f"<td>{_reach_cell(p)}</td>"
        f"<td>{'yes' if p.connected else '<span class=muted>no</span>'}</td>"
        "</tr>"
        for p in view.peers[:MAX_PEER_ROWS]
    )
    more = len(view.peers) - MAX_PEER_ROWS
    tail = f'<p class="muted">and {esc(more)} more.</p>' if more > 0 else ""
    return (
        head + "<table><thead><tr><th>node</th><th>site</th><th>address</th><th>reach</th>"
        f"<th>connected</th></tr></thead><tbody>{rows}</tbody></table>{tail}"
    )


def _warnings(view: StatusView) -> str:
    if not view.warnings:
        return '<p class="muted">No warnings since the HTTP API started.</p>'
    rows = "".join(
        "<tr>"
        f'<td class="nowrap">{esc(utc(e.created * 1000))}</td>'
        f'<td><span class="level {esc(e.level.lower())}">{esc(e.level)}</span></td>'
        f"<td>{esc(e.logger)}</td>"
        f"<td>{esc(e.name)}</td>"
        f'<td class="fields">'
        + " ".join(f"<span><b>{esc(k)}</b>={esc(v)}</span>" for k, v in e.fields)
        + "</td></tr>"
        for e in view.warnings
    )
    return (
        "<table><thead><tr><th>time</th><th>level</th><th>source</th><th>event</th>"
        f"<th>fields</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _attention(view: StatusView) -> list[str]:
    """What an operator should look at first (empty: all is well)."""
    s, last = view.status, view.last_pass
    notes = []
    if last is not None and last.unreadable:
        notes.append(f"{count(last.unreadable, 'record')} unreadable in the last repair pass")
    if last is not None and last.below_n:
        notes.append(f"{count(last.below_n, 'record')} below n holders")
    if not s.ledger_caught_up:
        notes.append("the ledger has not caught up with its peers")
    silent = sum(1 for p in view.peers if p.reach is Reach.SILENT)
    if silent:
        notes.append(f"{count(silent, 'peer')} did not answer")
    if s.store_quota_bytes and s.store_used_bytes > 0.9 * s.store_quota_bytes:
        notes.append("the store is over 90% full")
    return notes


CSS = """
:root{--fg:#1d2733;--muted:#687586;--line:#dfe4ea;--bg:#f4f6f9;--card:#fff;
--ok:#1f7a45;--okbg:#e3f4ea;--bad:#a2261b;--badbg:#fbe6e3;--accent:#24528f}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--fg);background:var(--bg)}
header{background:var(--accent);color:#fff;padding:18px 28px}
header h1{margin:0;font-size:22px;font-weight:600}
header p{margin:4px 0 0;opacity:.9}
main{padding:20px 28px;max-width:1280px}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:16px}
section.card,section.wide{background:var(--card);border:1px solid var(--line);
border-radius:8px;padding:14px 18px}
section.wide{margin-top:16px}
h2{font-size:16px;margin:0 0 10px;color:var(--accent)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;margin:0}
dt{color:var(--muted)}dd{margin:0;min-width:0}
code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.wrap{word-break:break-all}
.muted{color:var(--muted)}
.nowrap{white-space:nowrap}
.badge{display:inline-block;padding:0 8px;border-radius:10px;font-weight:600;font-size:13px}
.ok{background:var(--okbg);color:var(--ok)}.bad{background:var(--badbg);color:var(--bad)}
.bar{height:8px;background:var(--line);border-radius:4px;margin-top:4px;overflow:hidden}
.bar div{height:100%;background:var(--accent)}
table{border-collapse:collapse;width:100%;font-size:14px}
th{text-align:left;color:var(--muted);font-weight:600;border-bottom:2px solid var(--line)}
th,td{padding:5px 8px;vertical-align:top}
tbody tr{border-bottom:1px solid var(--line)}
.fields span{margin-right:10px;word-break:break-all}
.level{font-weight:600}.level.warning{color:#8a5a00}.level.error,.level.critical{color:var(--bad)}
.summary{margin:0 0 16px;padding:10px 14px;border-radius:8px}
.summary ul{margin:4px 0 0;padding-left:20px}
footer{padding:0 28px 24px;color:var(--muted);font-size:13px}
"""


def render(view: StatusView) -> str:
    """The whole page."""
    s = view.status
    short_id = s.node_id.hex()[:16]
    notes = _attention(view)
    if notes:
        items = "".join(f"<li>{esc(n)}</li>" for n in notes)
        summary = f'<div class="summary bad"><b>Needs attention</b><ul>{items}</ul></div>'
    else:
        summary = '<div class="summary ok"><b>All is well</b> as far as this node can see.</div>'
    cards = "".join(
        f'<section class="card"><h2>{esc(title)}</h2><dl>{body}</dl></section>'
        for title, body in (
            ("Identity", _identity(view)),
            ("Records", _records(view)),
            ("Store", _store(view)),
            ("Ledger and network", _ledger(view)),
            ("Repair", _repair(view)),
        )
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        f"<title>medvault {esc(s.site)} · {esc(short_id)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>medvault node <code>{esc(short_id)}</code></h1>"
        f"<p>site {esc(s.site)} · {esc(s.address)} · up {esc(duration(s.uptime_s))}</p>"
        "</header><main>"
        f"{summary}"
        f'<div class="cards">{cards}</div>'
        f'<section class="wide"><h2>Peers</h2>{_peers(view)}</section>'
        f'<section class="wide"><h2>Recent warnings</h2>{_warnings(view)}</section>'
        "</main>"
        f"<footer>Drawn at {esc(utc(view.now_ms))}; reloads every {REFRESH_S} s."
        " The same figures as JSON: <code>/v1/status</code>, <code>/v1/peers</code>.</footer>"
        "</body></html>"
    )
