"""The inspection report as one self-contained HTML page: inline SVG and CSS, a few lines of script, no assets."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from mpx.inspection import plots
from mpx.inspection.readout import format_summary

STYLE = """
body{font:13px/1.45 system-ui,sans-serif;margin:16px;color:#222;max-width:1180px}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:20px 0 6px} h3{font-size:14px;margin:14px 0 4px}
table{border-collapse:collapse;margin:4px 0 10px} th,td{border:1px solid #ccc;padding:2px 6px;text-align:left}
th{background:#f2f2f2} td.num{text-align:right;font-variant-numeric:tabular-nums} .meta{color:#666}
.bad{background:#ffcdd2} .ok{background:#e8f5e9} code{font-size:12px}
figure{display:inline-block;vertical-align:top;margin:4px 8px 8px 0;font-size:11px}
figcaption{max-width:360px} .legend span{display:inline-block;padding:0 6px;margin-right:4px;color:#fff}
section.module{border-top:1px solid #ddd;margin-top:8px}
"""

SCRIPT = """
(function(){
  var plots = document.querySelectorAll('svg.plot'), rendered = 0;
  plots.forEach(function(svg){
    var box = svg.getBoundingClientRect(), data = svg.querySelector('g.data'), inner = data ? data.getBBox() : null;
    var ok = box.width > 0 && box.height > 0 && inner !== null && (inner.width > 0 || inner.height > 0);
    svg.setAttribute('data-rendered', ok ? '1' : '0');
    if (ok) { rendered++; }
  });
  document.body.dataset.plots = plots.length;
  document.body.dataset.plotsRendered = rendered;
})();
"""


def _share(value: float) -> str:
    return "0" if value == 0 else f"{100 * value:.3g} %"


def _summary(data: dict[str, Any], recommendations: dict[str, Any]) -> str:
    out = ["<h2>Summary</h2><table><tr><th>format</th><th>overflowing modules</th>"]
    out.append("<th>underflowing to zero (&gt; threshold)</th></tr>")
    for name, over, under in format_summary(data, recommendations["threshold"]):
        out.append(
            f"<tr data-format='{escape(name)}'><td>{escape(name)}</td>"
            f"<td class='{'bad' if over else 'ok'}'>{escape(', '.join(over) or 'none')}</td>"
            f"<td class='{'bad' if under else 'ok'}'>{escape(', '.join(under) or 'none')}</td></tr>"
        )
    out.append("</table>")
    found = data["first_nonfinite"]
    if found:
        out.append(
            f"<p class='bad' id='nonfinite'>Step {found['step']}: the first non-finite gradient (backward order) was "
            f"<code>{escape(found['module'])}.{escape(found['parameter'])}</code>.</p>"
        )
    for reason, count in data.get("unmeasured", {}).items():
        out.append(f"<p class='bad unmeasured'>Not measured ({count}): {escape(reason)}.</p>")
    return "".join(out)


def _recommendations(recommendations: dict[str, Any], types: dict[str, str]) -> str:
    window = recommendations["loss_scale"]
    out = ["<h2>Recommendations</h2>"]
    out.append(
        f"<p class='meta'>A tensor fits a format when at most {_share(recommendations['threshold'])} of its values "
        "round to zero or past max; fp8 is judged with a per-tensor power-of-two scale, fp16 gradients at the "
        "recommended loss scale.</p>"
    )
    if window["window"]:
        low, high = window["window"]
        out.append(
            f"<p id='loss-scale'>Loss scale window (fp16): <b>{low:g} .. {high:g}</b>, recommended "
            f"<b>{window['recommended']:g}</b> ({escape(window['reason'])}).</p>"
        )
    else:
        out.append(f"<p id='loss-scale' class='bad'>No fp16 loss scale fits: {escape(window['reason'])}.</p>")
    out.append(
        "<table id='formats'><tr><th>module</th><th>type</th><th>narrowest format</th><th>does not fit</th></tr>"
    )
    for name, row in recommendations["modules"].items():
        failing = "; ".join(f"{f}: {', '.join(kinds)}" for f, kinds in row["failing"].items())
        out.append(
            f"<tr><td><code>{escape(name or '(model)')}</code></td><td>{escape(types.get(name, ''))}</td>"
            f"<td>{escape(row['format'])}</td><td class='meta'>{escape(failing)}</td></tr>"
        )
    out.append("</table>")
    for fmt, names in recommendations["keep_fp32"].items():
        out.append(f"<p>{escape(fmt)} compute: <code>keep_fp32={escape(json.dumps(names))}</code></p>")
    rows = [h for h in recommendations["fp8_headroom"] if h["headroom_bits"] is not None]
    if rows:
        out.append("<details><summary><b>fp8 scale headroom</b> (amax vs the format's max, per tensor)</summary>")
        out.append("<table id='fp8'><tr><th>tensor</th><th>format</th><th>amax</th>")
        out.append(
            "<th>headroom (bits, scale 1)</th><th>scale</th><th>amax drift (bits)</th><th>lost at scale</th></tr>"
        )
        for h in rows:
            drift = "-" if h["drift_bits"] is None else f"{h['drift_bits']:+.2f}"
            out.append(
                f"<tr><td><code>{escape(h['module'])} {escape(h['kind'])} {escape(h['parameter'])}</code></td>"
                f"<td>{escape(h['format'])}</td><td class='num'>{h['amax']:.3g}</td>"
                f"<td class='num'>{h['headroom_bits']:+.2f}</td><td class='num'>{h['scale']:g}</td>"
                f"<td class='num'>{drift}</td><td class='num'>{_share(h['lost_at_scale'])}</td></tr>"
            )
        out.append("</table></details>")
    return "".join(out)


def _tensor(entry: dict[str, Any], data: dict[str, Any]) -> str:
    name = f"{entry['module'] or '(model)'} {entry['kind']} {entry['parameter']}".strip()
    rows = "".join(
        f"<tr><td>{escape(f)}</td><td class='num'>{_share(s['underflow_zero'])}</td>"
        f"<td class='num'>{_share(s['underflow_subnormal'])}</td><td class='num'>{_share(s['overflow'])}</td></tr>"
        for f, s in entry["formats"].items()
    )
    smallest = "-" if entry["min_nonzero"] is None else f"{entry['min_nonzero']:.3g}"
    return (
        f"<figure class='tensor' data-module='{escape(entry['module'])}' data-kind='{escape(entry['kind'])}'>"
        f"{plots.histogram(entry, data['formats'], f'{name}: log2|x| histogram')}"
        f"{plots.series('amax', entry['amax_history'], data['recorded_steps'], f'{name}: amax per recorded step')}"
        f"<figcaption><b>{escape(name)}</b>: {entry['count']} values, amax {entry['amax']:.3g}, smallest non-zero "
        f"{smallest}, zeros {_share(entry['zeros'] / entry['count'])}, non-finite "
        f"{entry['inf'] + entry['nan']}<table><tr><th>format</th><th>to zero</th><th>to subnormal</th>"
        f"<th>overflow</th></tr>{rows}</table></figcaption></figure>"
    )


def render(data: dict[str, Any]) -> str:
    """The whole page for a readout with recommendations (InspectionReport.data())."""
    recommendations = data["recommendations"]
    types = {m["name"]: m["type"] for m in data["modules"]}
    skipped = [step for step, s in enumerate(data["skipped"]) if s]
    legend = "".join(
        f"<span style='background:{plots.colour(f['name'])}'>{escape(f['name'])}</span>" for f in data["formats"]
    )
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>mpx numerics inspection</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>mpx numerics inspection</h1>",
        f"<p class='meta'>{data['steps']} steps, statistics every {data['every']} (recorded: "
        f"{len(data['recorded_steps'])}); {len(skipped)} skipped. <span class='legend'>{legend}</span> "
        "Ranges: solid = normal numbers, pale = subnormals (values below round to zero).</p>",
        _summary(data, recommendations),
        _recommendations(recommendations, types),
        "<h2>Loss scale and skipped steps</h2>",
        plots.series("loss-scale", data["loss_scale"], list(range(data["steps"])), "loss scale per step", skipped),
        "<h2>Per module</h2>",
    ]
    for module in data["modules"]:
        entries = [t for t in data["tensors"] if t["module"] == module["name"]]
        if entries:
            out.append(
                f"<section class='module' data-module='{escape(module['name'])}'><h3><code>"
                f"{escape(module['name'] or '(model)')}</code> <span class='meta'>{escape(module['type'])}</span></h3>"
            )
            out.extend(_tensor(entry, data) for entry in entries)
            out.append("</section>")
    out.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "".join(out)
