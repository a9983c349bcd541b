"""``python -m tm.report LOG [LOG ...]``: the costliest conflict sites and inevitability sites
of a conflict log (see tm._conflict_log for its format), and a PNG timeline of the workers.

Make the log with ``TM_CONFLICT_LOG=run.log python prog.py`` (written at exit) or by calling
``tm.set_conflict_log(True)`` early and ``tm.write_report_log("run.log")`` at the end.

The PNG (default: LOG.png; ``--png PATH`` or ``--no-png``) shows each worker's span in time with
its commits, aborts and time lost, beside the conflict sites by time lost and the inevitability
sites by time held. It needs matplotlib, which is optional: where it does not import (often on
the free-threaded interpreter) the report says so, writes no PNG and still exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict

__all__ = ["load", "summarize", "summarize_inevitable", "format_report", "write_png", "main"]

FORMAT = "tm-conflict-log"


class LogError(Exception):
    pass


def load(paths):
    """Reads conflict logs: {'headers', 'stats', 'conflicts', 'inevitable', 'workers'} (lists)."""
    out = {"headers": [], "stats": [], "conflicts": [], "inevitable": [], "workers": []}
    key = {
        "header": "headers",
        "stats": "stats",
        "conflict": "conflicts",
        "inevitable": "inevitable",
        "worker": "workers",
    }
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise LogError(f"{path}:{n}: not JSON ({e})") from None
                if n == 1 and (rec.get("kind") != "header" or rec.get("format") != FORMAT):
                    raise LogError(f"{path}: not a tm conflict log (no {FORMAT} header)")
                kind = rec.get("kind")
                if kind in key:
                    rec["log"] = path
                    out[key[kind]].append(rec)
    return out


def _add(total, stats):
    for k, v in stats.items():
        if isinstance(v, dict):
            _add(total.setdefault(k, {}), v)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            total[k] = total.get(k, 0) + v
    return total


def summarize(data):
    """Conflict sites merged by (site, other_site), costliest first, and the summed stats."""
    sites = defaultdict(
        lambda: {"count": 0, "seconds_lost": 0.0, "causes": defaultdict(int), "cells": set()}
    )
    for c in data["conflicts"]:
        s = sites[(c.get("site") or "?", c.get("other_site") or "?")]
        s["count"] += c.get("count", 0)
        s["seconds_lost"] += c.get("seconds_lost", 0.0)
        s["causes"][c.get("cause", "?")] += c.get("count", 0)
        if c.get("cell_name"):
            s["cells"].add(c["cell_name"])
    ranked = sorted(
        ({"site": k[0], "other_site": k[1], **v} for k, v in sites.items()),
        key=lambda s: (s["seconds_lost"], s["count"]),
        reverse=True,
    )
    total = {}
    for st in data["stats"]:
        st = {k: v for k, v in st.items() if k not in ("kind", "log")}
        _add(total, st)
    return ranked, total


def summarize_inevitable(data):
    """Inevitability sites merged by (site, cause), the longest total hold first."""
    sites = defaultdict(
        lambda: {
            "count": 0,
            "seconds_held": 0.0,
            "max_seconds_held": 0.0,
            "details": defaultdict(int),
        }
    )
    for r in data.get("inevitable", []):
        s = sites[(r.get("site") or "?", r.get("cause") or "?")]
        s["count"] += r.get("count", 0)
        s["seconds_held"] += r.get("seconds_held", 0.0)
        s["max_seconds_held"] = max(s["max_seconds_held"], r.get("max_seconds_held", 0.0))
        if r.get("detail"):
            s["details"][r["detail"]] += r.get("count", 0)
    return sorted(
        ({"site": k[0], "cause": k[1], **v} for k, v in sites.items()),
        key=lambda s: (s["seconds_held"], s["count"]),
        reverse=True,
    )


def _ms(seconds):
    return f"{seconds * 1e3:.3f} ms"


def format_report(data, top=10):
    ranked, total = summarize(data)
    lines = []
    logs = sorted({h["log"] for h in data["headers"]})
    lines.append(f"tm report: {', '.join(logs)}")
    for h in data["headers"]:
        if not h.get("conflict_log"):
            lines.append(
                f"  note: {h['log']} was written with the conflict log off: "
                "sites are empty (tm.set_conflict_log(True) or TM_CONFLICT_LOG)"
            )
    commits = total.get("commits", 0)
    aborts = total.get("total_aborts", 0)
    lines.append("")
    lines.append(
        f"transactions: {commits} commits ({total.get('read_only_commits', 0)} read-only), "
        f"{aborts} aborts, {_ms(total.get('seconds_aborted', 0.0))} lost to aborts"
    )
    by_cause = {k: v for k, v in total.get("aborts", {}).items() if v}
    if by_cause:
        lines.append(
            "aborts by cause: " + ", ".join(f"{k} {v}" for k, v in sorted(by_cause.items()))
        )
    lines.append("")
    lines.append(
        f"inevitability: {total.get('inevitable_commits', 0)} inevitable commits "
        f"({100.0 * total.get('inevitable_commits', 0) / commits if commits else 0.0:.1f}% "
        f"of commits), {total.get('escalations', 0)} escalations after repeated aborts, "
        f"{_ms(total.get('seconds_inevitable', 0.0))} inevitable"
    )
    lines.append("")
    if ranked:
        lines.append(f"costliest conflict sites (top {min(top, len(ranked))} of {len(ranked)}):")
        for i, s in enumerate(ranked[:top], 1):
            causes = ", ".join(f"{k} {v}" for k, v in sorted(s["causes"].items()))
            cells = ", ".join(sorted(s["cells"])) or "?"
            lines.append(
                f"{i:3}. {s['count']} conflicts, {_ms(s['seconds_lost'])} lost ({causes}; {cells})"
            )
            lines.append(f"     aborted at   {s['site']}")
            lines.append(f"     conflicting  {s['other_site']}")
    else:
        lines.append("no conflicts recorded")
    inevitable = summarize_inevitable(data)
    lines.append("")
    if inevitable:
        lines.append(
            f"costliest inevitability sites, by time the token was held "
            f"(top {min(top, len(inevitable))} of {len(inevitable)}):"
        )
        for i, s in enumerate(inevitable[:top], 1):
            details = ", ".join(f"{k} {v}" for k, v in sorted(s["details"].items()))
            lines.append(
                f"{i:3}. {s['count']} x {s['cause']}, {_ms(s['seconds_held'])} held "
                f"(longest {_ms(s['max_seconds_held'])}{'; ' + details if details else ''})"
            )
            lines.append(f"     at  {s['site']}")
    else:
        lines.append("no inevitability sites recorded")
    if data["workers"]:
        lines.append("")
        lines.append("workers:")
        t0 = min(w["start"] for w in data["workers"])
        for w in sorted(data["workers"], key=lambda w: (w["start"], str(w["name"]))):
            st = w.get("stats", {})
            lines.append(
                f"  {w['name']}: {w['start'] - t0:.3f}s..{w['end'] - t0:.3f}s, "
                f"{st.get('commits', 0)} commits, {st.get('total_aborts', 0)} aborts, "
                f"{_ms(st.get('seconds_aborted', 0.0))} lost, "
                f"{st.get('inevitable_commits', 0)} inevitable ({_ms(st.get('seconds_inevitable', 0.0))})"
            )
    return "\n".join(lines)


def _bar_panel(ax, title, labels, values, *, color, xlabel, empty):
    """Sites as horizontal bars, the costliest (first) on top, or the note `empty` if none."""
    if labels:
        ax.barh(range(len(labels)), values, color=color)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
    else:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)


def write_png(data, path, top=10):
    """Writes the chart; raises ImportError when matplotlib does not import."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked, _ = summarize(data)
    inevitable = summarize_inevitable(data)
    workers = sorted(data["workers"], key=lambda w: (w["start"], str(w["name"])))
    rows = len(workers) + min(top, len(ranked)) + min(top, len(inevitable))
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 4 + 0.4 * rows))
    if workers:
        t0 = min(w["start"] for w in workers)
        for i, w in enumerate(workers):
            st = w.get("stats", {})
            span = max(w["end"] - w["start"], 1e-6)
            ax1.broken_barh([(w["start"] - t0, span)], (i - 0.4, 0.8), color="tab:blue")
            lost = min(st.get("seconds_aborted", 0.0), span)
            inev = min(st.get("seconds_inevitable", 0.0), span - lost)
            if lost > 0:  # a zero-width bar still draws its edge
                ax1.broken_barh([(w["start"] - t0, lost)], (i - 0.4, 0.35), color="tab:red")
            if inev > 0:
                ax1.broken_barh(
                    [(w["start"] - t0 + lost, inev)], (i - 0.4, 0.35), color="tab:orange"
                )
            ax1.text(
                w["end"] - t0,
                i,
                f" {st.get('commits', 0)} commits, {st.get('total_aborts', 0)} aborts",
                va="center",
                fontsize=8,
            )
        ax1.set_yticks(range(len(workers)), [str(w["name"]) for w in workers])
        ax1.set_xlabel("seconds (blue: span; red: lost to aborts; orange: inevitable)")
    else:
        ax1.text(
            0.5,
            0.5,
            "no worker spans recorded (tm.worker_span / TransactionQueue)",
            ha="center",
            va="center",
            transform=ax1.transAxes,
        )
    ax1.set_title("workers")
    conflicts = ranked[:top]
    _bar_panel(
        ax2,
        "costliest conflict sites",
        [
            f"{os.path.basename(s['site'])} vs {os.path.basename(s['other_site'])}"
            for s in conflicts
        ],
        [s["seconds_lost"] * 1e3 for s in conflicts],
        color="tab:red",
        xlabel="ms lost",
        empty="no conflicts recorded",
    )
    held = inevitable[:top]
    _bar_panel(
        ax3,
        "costliest inevitability sites",
        [f"{os.path.basename(s['site'])} ({s['cause']})" for s in held],
        [s["seconds_held"] * 1e3 for s in held],
        color="tab:orange",
        xlabel="ms inevitable (token held)",
        empty="no inevitability sites recorded",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tm.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("logs", nargs="+", metavar="LOG", help="conflict log(s) to read")
    parser.add_argument(
        "--top", type=int, default=10, help="conflict and inevitability sites to show (10 each)"
    )
    parser.add_argument("--png", help="where to write the chart (default: the first LOG + .png)")
    parser.add_argument("--no-png", action="store_true", help="write no chart")
    args = parser.parse_args(argv)
    try:
        data = load(args.logs)
    except (OSError, LogError) as e:
        print(f"tm.report: {e}", file=sys.stderr)
        return 2
    print(format_report(data, top=args.top))
    if not args.no_png:
        png = args.png or args.logs[0] + ".png"
        try:
            write_png(data, png, top=args.top)
        except ImportError as e:
            print(
                f"\nno chart: matplotlib does not import on this interpreter "
                f"({sys.executable}: {e}), so no PNG timeline was written; install matplotlib "
                "for it to get one",
                file=sys.stdout,
            )
        else:
            print(f"\nchart: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
