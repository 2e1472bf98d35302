"""The simulator's answer as a printed table and as a chart of accuracy against pool size."""

from __future__ import annotations

from pathlib import Path

COLUMNS = ("numbers", "x load", "calls", "accuracy", "right", "wrong", "unattributed",
           "exhausted")


def table_rows(report) -> list[dict]:
    """One row per pool size: the counts by outcome and the share credited right."""
    rows = []
    for size in report.sizes:
        rows.append({
            "numbers": size.numbers,
            "x load": size.numbers / report.offered_load if report.offered_load else 0.0,
            "calls": len(size.calls),
            "accuracy": size.accuracy,
            **{outcome: size.count(outcome)
               for outcome in ("right", "wrong", "unattributed", "exhausted")},
        })
    return rows


def format_table(report) -> str:
    """The run's header and a fixed-width table, one line per pool size."""
    header = (f"{report.days:g} days, seed {report.seed}: {report.visits} visits, "
              f"{report.calls} calls; offered load {report.offered_load:.1f} leases in the "
              f"busiest hour ({report.mean_load:.1f} over the day); "
              f"lease {report.settings.lease_seconds}s, cool-down "
              f"{report.settings.cooldown_seconds}s")
    lines = [header, "  ".join(f"{c:>12}" for c in COLUMNS)]
    for row in table_rows(report):
        cells = [f"{row['numbers']:>12}", f"{row['x load']:>11.2f}x", f"{row['calls']:>12}",
                 f"{row['accuracy']:>11.1%}"]
        cells += [f"{row[c]:>12}" for c in COLUMNS[4:]]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def write_chart(report, folder: str | Path, name: str = "accuracy.png") -> Path | None:
    """Draw accuracy against pool size into ``folder``; None when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # no display: files only
    from matplotlib import pyplot as plt

    rows = table_rows(report)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([r["numbers"] for r in rows], [100 * r["accuracy"] for r in rows], marker="o")
    ax.axvline(report.offered_load, linestyle=":", color="grey", label="offered load")
    ax.set_xlabel("numbers in the pool")
    ax.set_ylabel("calls credited to their own visit (%)")
    ax.set_title(f"Attribution accuracy, {report.days:g} days, {report.calls} calls")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    path = folder / name
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


PHASES = ("during", "right_after", "later")


def format_phases(report) -> str:
    """Per size, the calls credited right out of all, by when the caller called: where the
    wrong credits come from (late callers, when the number was leased again meanwhile)."""
    lines = ["credited right / calls, by when the visitor called:",
             "  ".join(f"{c:>12}" for c in ("numbers", *PHASES))]
    for size in report.sizes:
        cells = [f"{size.numbers:>12}"]
        for phase in PHASES:
            calls = [c for c in size.calls if c.phase == phase]
            right = sum(1 for c in calls if c.outcome == "right")
            cells.append(f"{f'{right}/{len(calls)}':>12}")
        lines.append("  ".join(cells))
    return "\n".join(lines)


def format_weighed(report) -> str:
    """Per size, who made the calls the matcher weighed between candidates: the possession
    rule's answer, the likeliest other candidate, another one, or none of them. Where the
    first two are close, no rule that picks one candidate can do much better than
    possession, whatever its weights: the candidates' timing does not tell them apart."""
    lines = ["calls weighed between candidates, by who made them:",
             "  ".join(f"{c:>12}" for c in ("numbers", "weighed", "possession", "likeliest",
                                               "other", "none"))]
    for size in report.sizes:
        counts = [0, 0, 0, 0]
        weighed = [c for c in size.calls if c.weighed]
        for call in weighed:
            first, *others = call.weighed
            best = max(others, key=lambda pair: pair[1])[0] if others else None
            sessions = {session for session, _ in call.weighed}
            if call.true_session == first[0]:
                counts[0] += 1
            elif call.true_session == best:
                counts[1] += 1
            elif call.true_session in sessions:
                counts[2] += 1
            else:
                counts[3] += 1
        lines.append("  ".join(f"{v:>12}" for v in (size.numbers, len(weighed), *counts)))
    return "\n".join(lines)
