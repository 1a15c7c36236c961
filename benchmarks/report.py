"""The results of a run as a table (Markdown), a JSON file and a chart of the ratios."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmarks._common import ACTORNET, ERLANG

__all__ = ["fmt", "render_table", "write_json", "draw_chart", "goal_summary"]


def fmt(value: float | None) -> str:
    """A number in 3 significant digits, with k/M suffixes for large ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    a = abs(value)
    if a >= 1e6:
        return f"{value / 1e6:.3g}M"
    if a >= 1e4:
        return f"{value / 1e3:.3g}k"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 1:
        return f"{value:.3g}"
    if a == 0:
        return "0"
    return f"{value:.2g}"


def _series(s: dict[str, Any]) -> str:
    if "median" not in s:
        return f"skipped: {s.get('skipped', 'n/a')}"
    if len(s.get("samples", [])) <= 1 or s["min"] == s["max"]:
        return fmt(s["median"])
    return f"{fmt(s['median'])} [{fmt(s['min'])}..{fmt(s['max'])}]"


def _ratio(r: dict[str, Any]) -> str:
    if r["min"] == r["max"]:
        return f"x{r['median']:.2g}"
    return f"x{r['median']:.2g} [{r['min']:.2g}..{r['max']:.2g}]"


def _status(row: dict[str, Any]) -> str:
    goal = row.get("goal")
    if goal is None:
        return "report"
    if goal["met"] is None:
        return "n/a"
    return "met" if goal["met"] else "MISSED"


def render_table(results: dict[str, Any]) -> str:
    """The Markdown table of a run: one line per row of every figure."""
    lines = [
        "| figure | unit | actornet | baselines (speed ratio of actornet) | Erlang/OTP "
        "| goal | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, fig in results["figures"].items():
        if fig.get("error"):
            lines.append(f"| {name} | | ERROR: {fig['error'].splitlines()[-1][:120]} "
                         "| | | | error |")
            continue
        for row in fig["rows"]:
            series = row["series"]
            ratios = row.get("speed_ratios", {})
            base = []
            for bname, s in series.items():
                if bname in (ACTORNET, ERLANG):
                    continue
                cell = f"{bname}: {_series(s)}"
                if bname in ratios:
                    cell += f" → {_ratio(ratios[bname])}"
                base.append(cell)
            erl = _series(series.get(ERLANG, {"skipped": "n/a"}))
            if ERLANG in ratios:
                erl += f" → {_ratio(ratios[ERLANG])}"
            goal = row.get("goal")
            goal_text = goal["text"] if goal else "report"
            if goal and goal.get("ratio") is not None:
                goal_text += f" (x{goal['ratio']:.2g})"
            lines.append(
                f"| {row['label']} | {row['unit']} | {_series(series.get(ACTORNET, {}))} "
                f"| {'; '.join(base) or '-'} | {erl} | {goal_text} | {_status(row)} |"
            )
    lines.append("")
    lines.append("Cells: median [min-max] over repetitions. Speed ratio xr: actornet's value "
                 "over the baseline's, inverted for times, so r > 1 means actornet is faster; "
                 "taken per repetition (A B A B interleaved), median [min-max].")
    notes = [n for fig in results["figures"].values() for n in fig.get("notes", [])]
    notes += [f"{row['label']}: {row['note']}" for fig in results["figures"].values()
              for row in fig.get("rows", []) if row.get("note")]
    if notes:
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
    return "\n".join(lines)


def goal_summary(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(row label, goal text, status)`` for every row with a goal."""
    out = []
    for fig in results["figures"].values():
        for row in fig.get("rows", []):
            if row.get("goal"):
                out.append((row["label"], row["goal"]["text"], _status(row)))
    return out


def write_json(results: dict[str, Any], path: Path) -> None:
    """Write `results` to `path` as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


def draw_chart(results: dict[str, Any], path: Path) -> str:
    """Draw the speed ratios as a PNG at `path`; returns a note ("" when drawn)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "chart skipped: matplotlib is not installed"
    bars: list[tuple[str, float, float, float, str, float | None]] = []
    for fig in results["figures"].values():
        for row in fig.get("rows", []):
            goal = row.get("goal") or {}
            for base, r in row.get("speed_ratios", {}).items():
                is_goal = goal.get("baseline") == base
                if is_goal and goal.get("met") is not None:
                    color = "#2e7d32" if goal["met"] else "#c62828"
                else:
                    color = "#ef6c00" if base == ERLANG else "#5c6bc0"
                bars.append((f"{row['label']}  vs {base}", r["median"], r["min"], r["max"],
                             color, goal.get("factor") if is_goal else None))
    if not bars:
        return "chart skipped: no ratios to draw"
    height = max(4.0, 0.32 * len(bars) + 1.5)
    fig_, ax = plt.subplots(figsize=(11, height))
    ys = list(range(len(bars)))[::-1]
    for y, (_label, med, lo, hi, color, factor) in zip(ys, bars, strict=True):
        ax.barh(y, med, color=color, height=0.7)
        ax.errorbar(med, y, xerr=[[med - lo], [hi - med]], fmt="none", ecolor="black",
                    capsize=2, lw=0.8)
        if factor is not None:
            ax.plot([factor, factor], [y - 0.45, y + 0.45], color="black", lw=2)
    ax.set_yticks(ys)
    ax.set_yticklabels([b[0] for b in bars], fontsize=8)
    ax.set_xscale("log")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("speed ratio of actornet (>1: actornet faster), log scale; "
                  "black tick = goal; error bar = min-max")
    quick = " (quick smoke run)" if results["meta"].get("quick") else ""
    ax.set_title(f"actornet vs baselines, same run{quick}: green goal met, red missed, "
                 "orange Erlang/OTP", fontsize=10)
    fig_.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig_.savefig(path, dpi=110)
    plt.close(fig_)
    return ""
