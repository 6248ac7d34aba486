"""The single-file HTML report: readiness on top, the ops x formats x backends matrix, filters; no external assets."""

from __future__ import annotations

from ..report import BackendReport, Report
from ..status import Status
from .accuracy import html_section as accuracy_section
from .curves import section as curves_section
from .grid import cells, columns, format_ulp, problems, readiness, rows
from .sanitize import html as escape


def _status_rule(status: Status) -> str:
    text = f";color:{status.colour.text}" if status.colour.text else ""
    return f".s-{status}{{background:{status.colour.background}{text}}}"


STYLE = """
body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#222}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:18px 0 6px}
table{border-collapse:collapse;margin-bottom:10px} th,td{border:1px solid #ccc;padding:2px 6px;text-align:center}
th{background:#f2f2f2;position:sticky;top:0} td.op{text-align:left;font-family:monospace}
/* statuses */
.ready{background:#4caf50;color:#fff}.not-ready{background:#ffcdd2}.none{background:#fff}
.dim{opacity:.15} .meta{color:#666} #filters{margin:10px 0;padding:6px;background:#fafafa;border:1px solid #ddd}
.legend span{display:inline-block;padding:1px 6px;margin-right:4px}
figure.curve{display:inline-block;vertical-align:top;width:250px;margin:4px;font-size:11px}
figure.curve code{font-size:11px}
""".replace("/* statuses */", "".join(_status_rule(status) for status in Status))

SCRIPT = """
(function(){
  var form = document.getElementById('filters');
  function state(){ return {status: form.status.value, backend: form.backend.value, op: form.op.value.trim()}; }
  function apply(){
    var f = state(), shown = 0;
    document.querySelectorAll('[data-backend]').forEach(function(el){
      el.hidden = !!f.backend && el.dataset.backend !== f.backend;
    });
    document.querySelectorAll('tr.row').forEach(function(row){
      var cellsOf = row.querySelectorAll('td.cell'), match = !f.status;
      cellsOf.forEach(function(c){
        var hit = !f.status || c.dataset.status === f.status;
        c.classList.toggle('dim', !hit);
        if (hit && f.status && !c.hidden) { match = true; }
      });
      var opOk = !f.op || row.dataset.op.indexOf(f.op) >= 0;
      row.hidden = !(match && opOk);
      if (!row.hidden) { shown++; }
    });
    document.body.dataset.rowsShown = shown;
    var hash = Object.keys(f).filter(function(k){ return f[k]; })
      .map(function(k){ return k + '=' + encodeURIComponent(f[k]); }).join('&');
    if (location.hash.slice(1) !== hash) { history.replaceState(null, '', hash ? '#' + hash : location.pathname); }
  }
  location.hash.slice(1).split('&').forEach(function(pair){
    var kv = pair.split('='); if (kv.length === 2 && form[kv[0]]) { form[kv[0]].value = decodeURIComponent(kv[1]); }
  });
  form.addEventListener('input', apply); form.addEventListener('change', apply);
  apply();
  document.body.dataset.ready = '1';
})();
"""


def render(report: Report) -> str:
    """The whole report as one HTML document."""
    meta = report.metadata
    available = [b for b in report.backends if b.available]
    formats = columns(report)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>mpx conformance report</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>mpx conformance report</h1>",
        f"<p class='meta'>mpx {escape(str(meta.get('mpx')))} · torch {escape(str(meta.get('torch')))} · onnxruntime "
        f"{escape(str(meta.get('onnxruntime')))} · python {escape(str(meta.get('python')))} · "
        f"{escape(str(meta.get('machine', {}).get('arch', '')))} · {escape(str(meta.get('started', '')))}</p>",
        "<h2>Scenario readiness</h2>",
        *(_readiness(b) for b in report.backends),
        _filters(report),
        "<p class='legend'>"
        + "".join(f"<span class='s-{s}' title='{escape(s.meaning)}'>{s}</span>" for s in Status)
        + "</p>",
        "<h2>Ops x formats x backends</h2>",
        _matrix(report, available, formats),
        "<h2>Failures</h2>",
        _failures(available),
        "<h2>Model loss curves</h2>",
        curves_section(available),
        accuracy_section(report),
        f"<script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts)


def _readiness(backend: BackendReport) -> str:
    if not backend.available:
        name = escape(backend.name)
        return f"<p data-backend='{name}'><b>{name}</b>: not available - {escape(backend.reason)}</p>"
    formats, by_scenario = readiness(backend)
    out = [f"<table class='readiness' data-backend='{escape(backend.name)}'><tr><th>{escape(backend.name)}</th>"]
    out += [f"<th>{escape(f)}</th>" for f in formats]
    out.append("</tr>")
    for name, by_format in by_scenario.items():
        out.append(f"<tr><td class='op'>{escape(name)}</td>")
        for fmt in formats:
            result = by_format.get(fmt)
            if result is None:
                out.append("<td class='none'></td>")
                continue
            title = f"{result.policy}: {result.required} requirements, coverage {result.coverage:.0%}"
            title += f", runs {result.runs:.0%}"
            title += "".join(f"\n{m.op} {m.format} {m.pass_}: {m.reason}" for m in result.missing)
            label = "ready" if result.ready else f"{result.coverage:.0%} ({len(result.missing)} missing)"
            klass = "ready" if result.ready else "not-ready"
            out.append(
                f"<td class='scenario {klass}' data-scenario='{escape(name)}' data-format='{escape(fmt)}' "
                f"data-ready='{str(result.ready).lower()}' title='{escape(title)}'>{label}</td>"
            )
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _filters(report: Report) -> str:
    statuses = "".join(f"<option value='{s}'>{s}</option>" for s in Status)
    backends = "".join(
        f"<option value='{escape(b.name)}'>{escape(b.name)}</option>" for b in report.backends if b.available
    )
    return (
        "<form id='filters' onsubmit='return false'>status <select name='status'><option value=''>all</option>"
        f"{statuses}</select> backend <select name='backend'><option value=''>all</option>{backends}</select> "
        "op <input name='op' placeholder='e.g. matmul' size='14'></form>"
    )


def _matrix(report: Report, backends: list[BackendReport], formats: list[str]) -> str:
    grids = {b.name: cells(b) for b in backends}
    out = ["<table id='matrix'><tr><th rowspan='2'>op</th><th rowspan='2'>pass</th>"]
    out += [f"<th colspan='{len(formats)}' data-backend='{escape(b.name)}'>{escape(b.name)}</th>" for b in backends]
    out.append("</tr><tr>")
    out += [f"<th data-backend='{escape(b.name)}'>{escape(f)}</th>" for b in backends for f in formats]
    out.append("</tr>")
    for op, pass_ in rows(report):
        out.append(
            f"<tr class='row' data-op='{escape(op)}' data-pass='{escape(pass_)}'>"
            f"<td class='op'>{escape(op)}</td><td>{escape(pass_)}</td>"
        )
        for backend in backends:
            for fmt in formats:
                cell = grids[backend.name].get((op, pass_, fmt))
                attrs = f"data-backend='{escape(backend.name)}' data-op='{escape(op)}' data-pass='{escape(pass_)}'"
                attrs += f" data-format='{escape(fmt)}'"
                if cell is None:
                    out.append(f"<td class='none' {attrs}></td>")
                    continue
                out.append(
                    f"<td class='cell s-{cell.status}' {attrs} data-status='{cell.status}' "
                    f"title='{escape(cell.hover())}'>{cell.status}</td>"
                )
        out.append("</tr>")
    out.append("</table>")
    return "".join(out)


def _failures(backends: list[BackendReport]) -> str:
    out = [
        "<table id='failures'><tr><th>backend</th><th>case</th><th>status</th>"
        "<th>max error (ulp)</th><th>detail</th></tr>"
    ]
    for backend in backends:
        for case in problems(backend):
            error = format_ulp(case.max_error_ulp)
            out.append(
                f"<tr class='failure' data-backend='{escape(backend.name)}' data-status='{case.status}'>"
                f"<td>{escape(backend.name)}</td>"
                f"<td class='op'>{escape(case.id)}</td><td class='s-{case.status}'>{case.status}</td><td>{error}</td>"
                f"<td style='text-align:left'>{escape(case.detail)}</td></tr>"
            )
    out.append("</table>")
    return "".join(out)
