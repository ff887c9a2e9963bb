"""The memory report: a PNG of arena use per op before and after patching, and a table.

`tflm-patch report original.tflite patched.tflite -o DIR [--sram-budget 96KiB]`
writes DIR/memory.png, DIR/report.md and DIR/report.html (the same table and
picture). The numbers are TFLM's: the planned arena as arena.py replays it,
on top of the persistent memory persistent.py predicts (the floor no op goes
below), so the curves end at `arena_used_bytes()`, the kTensorArenaSize to use.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass

from .converter import analysis, model_io, pairing, persistent
from .converter.graph import build_graph


@dataclass
class ReportRow:
    index: int            # op index in the original model
    name: str
    output_shape: str
    before: int           # arena bytes in use during the op, original model
    after: int            # ... patched model (PATCH_STAGE's value for every stage op)
    in_stage: bool


def build_rows(original_bytes: bytes, patched_bytes: bytes, original_name: str = "the first model",
               patched_name: str = "the second model") -> tuple:
    """Rows per op of the original model; ModelError if the two models do not belong together."""
    original_model = model_io.parse_model(original_bytes, original_name)
    patched_model = model_io.parse_model(patched_bytes, patched_name)
    original, patched = build_graph(original_model), build_graph(patched_model)
    record = pairing.require_roles(original_model, original, patched_model, patched, original_name, patched_name)
    mapping = pairing.op_map(original, patched, record)
    before = analysis.analyze(original)
    after = analysis.analyze(patched)
    patched_op_of = {i: p for p, run in enumerate(mapping) for i in run}
    rows = []
    for r in before.rows:
        p = patched_op_of[r.index]
        in_stage = patched.ops[p].custom_code == pairing.CUSTOM_CODE
        rows.append(ReportRow(r.index, r.name, "x".join(map(str, r.output_shapes[0])) if r.output_shapes else "",
                              r.extent_bytes, after.rows[p].extent_bytes, in_stage))
    record = dict(record, stage_runs=[run for p, run in enumerate(mapping)
                                      if patched.ops[p].custom_code == pairing.CUSTOM_CODE])
    return rows, before.arena.head_bytes, after.arena.head_bytes, record


def persistent_floors(original_bytes: bytes, patched_bytes: bytes) -> tuple:
    """Predicted persistent bytes (64-bit host build, reference kernels) of both models, or (None, None)."""
    floors = []
    for data in (original_bytes, patched_bytes):
        graph = build_graph(model_io.parse_model(data))
        total = persistent.try_predict_total(graph, 0)
        floors.append(None if total is None else total.tail_bytes)
    return tuple(floors) if None not in floors else (None, None)


def plot(rows, before_peak, after_peak, budget, path, title, floors=(None, None)) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r.index for r in rows]
    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=120)
    stage_end = max((r.index for r in rows if r.in_stage), default=-1)
    if stage_end >= 0:
        ax.axvspan(-0.5, stage_end + 0.5, color="#fde9c9", label="PATCH_STAGE (patch by patch)")
    fb, fa = floors if floors[0] is not None else (0, 0)
    if floors[0] is not None:
        for floor, color, name in ((fb, "#bbbbbb", "original"), (fa, "#9cc3e6", "patched")):
            ax.fill_between([-0.5, len(rows) - 0.5], 0, floor / 1024, color=color, alpha=0.35, hatch="//",
                            label=f"{name}: persistent floor {floor / 1024:.1f} KiB")
    what = "arena_used_bytes()" if floors[0] is not None else "peak"
    ax.step(xs, [(fb + r.before) / 1024 for r in rows], where="mid", color="#888888", lw=2,
            label=f"original: {what} {(fb + before_peak) / 1024:.1f} KiB")
    ax.step(xs, [(fa + r.after) / 1024 for r in rows], where="mid", color="#1f6fb4", lw=2.4,
            label=f"patched: {what} {(fa + after_peak) / 1024:.1f} KiB")
    if budget:
        ax.axhline(budget / 1024, color="#c0392b", ls="--", lw=1.5, label=f"SRAM budget {budget / 1024:.0f} KiB")
    ax.set_xlabel("operator (original model order)")
    ax.set_ylabel("arena in use during the op (KiB)" if floors[0] is None
                  else "persistent + planned arena in use (KiB)")
    ax.set_title(title)
    ax.set_xlim(-0.5, len(rows) - 0.5)
    ax.set_ylim(0, max(fb + before_peak, fa + after_peak, budget or 0) / 1024 * 1.25)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper right", frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _table_md(rows) -> str:
    lines = ["| op | name | output | before (B) | after (B) |", "|---:|---|---|---:|---:|"]
    for r in rows:
        name = f"{r.name} (in PATCH_STAGE)" if r.in_stage else r.name
        lines.append(f"| {r.index} | {name} | {r.output_shape} | {r.before:,} | {r.after:,} |")
    return "\n".join(lines)


def write_report(original_path: str, patched_path: str, out_dir: str, budget: int | None) -> dict:
    model_io.check_output_directory(out_dir)
    original = model_io.read_model_bytes(original_path)
    patched = model_io.read_model_bytes(patched_path)
    rows, before_peak, after_peak, record = build_rows(original, patched, original_path, patched_path)
    os.makedirs(out_dir, exist_ok=True)
    png = os.path.join(out_dir, "memory.png")
    title = f"{os.path.basename(original_path)}: TFLM arena per op, {record['grid'][0]}x{record['grid'][1]} patches"
    floors = persistent_floors(original, patched)
    plot(rows, before_peak, after_peak, budget, png, title, floors)
    stages = ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in record["stage_runs"])
    summary = (f"Planned TFLM arena: **{before_peak:,} B** before, **{after_peak:,} B** after "
               f"({before_peak / after_peak:.2f}x smaller); stage ops {stages}, "
               f"grid {record['grid'][0]}x{record['grid'][1]}, stage MACs x{record['macs_patched'] / max(1, record['macs_original']):.3f}"
               + (f"; SRAM budget {budget:,} B: {'fits' if after_peak <= budget else 'does NOT fit'}" if budget else ""))
    totals = ""
    if floors[0] is not None:
        tb, ta = floors[0] + before_peak, floors[1] + after_peak
        totals = (f"`arena_used_bytes()` (kTensorArenaSize, 64-bit host build, reference kernels): "
                  f"**{tb:,} B** before, **{ta:,} B** after ({tb / ta:.2f}x smaller); persistent "
                  f"{floors[0]:,} B -> {floors[1]:,} B, planned {before_peak:,} B -> {after_peak:,} B.")
        # A GFM table without leading pipes: the per-op table below stays the only "| ..." one.
        summary_table = ("summary | before (B) | after (B)\n---|---:|---:\n"
                         f"planned arena | {before_peak:,} | {after_peak:,}\n"
                         f"persistent | {floors[0]:,} | {floors[1]:,}\n"
                         f"total: arena_used_bytes() | {tb:,} | {ta:,}\n")
    else:
        summary_table = ""
    md = (f"# Memory report\n\n{summary}\n\n{totals}\n\n{summary_table}\n![arena per op](memory.png)\n\n"
          f"{_table_md(rows)}\n")
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write(md)
    body_rows = "".join(
        f"<tr{' class=stage' if r.in_stage else ''}><td>{r.index}</td><td>{html.escape(r.name)}</td>"
        f"<td>{r.output_shape}</td><td>{r.before:,}</td><td>{r.after:,}</td></tr>" for r in rows)
    page = (
        "<!doctype html><meta charset=utf-8><title>tflm-patch memory report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:2px 10px;"
        "text-align:right}td:nth-child(2),td:nth-child(3){text-align:left}tr.stage{background:#fde9c9}"
        "table{border-collapse:collapse}tr:nth-child(even){background:#f4f4f4}</style>"
        f"<h1>Memory report</h1><p>{html.escape(summary).replace('**', '')}</p>"
        f"<p>{html.escape(totals).replace('**', '').replace('`', '')}</p>"
        "<img src=memory.png alt='arena per op' style='max-width:100%'>"
        "<table><tr><th>op</th><th>name</th><th>output</th><th>before (B)</th><th>after (B)</th></tr>"
        f"{body_rows}</table>")
    with open(os.path.join(out_dir, "report.html"), "w") as f:
        f.write(page)
    return {"png": png, "rows": len(rows), "before": before_peak, "after": after_peak,
            "total_before": None if floors[0] is None else floors[0] + before_peak,
            "total_after": None if floors[1] is None else floors[1] + after_peak}
