"""The Grafana dashboards (check `dashboard`).

A panel on a metric nobody registers shows "No data" forever, which looks like a quiet
system; every pulse_* metric a query uses must be registered by the services. Panel ids
must be unique (Grafana links and edits by id) and the datasource a variable.
"""

import json
import re

from .sources import registered


def panel_queries(dash):
    """([panel ids], [(panel title, expr)]) of a dashboard, nested rows included."""
    ids = []
    exprs = []

    def walk(panels):
        for p in panels or []:
            ids.append(p.get("id"))
            for t in p.get("targets") or []:
                if t.get("expr"):
                    exprs.append((p.get("title"), t["expr"]))
            walk(p.get("panels"))

    walk(dash.get("panels"))
    return ids, exprs


def check_dashboard(ctx, path, dash, metric_names):
    ids, exprs = panel_queries(dash)
    if len(ids) != len(set(ids)):
        ctx.fail("dashboard", f"{path}: panel ids are not unique")
    if not exprs:
        ctx.fail("dashboard", f"{path}: no queries")
    variables = {v.get("name") for v in (dash.get("templating") or {}).get("list") or []}
    if "datasource" not in variables:
        ctx.fail("dashboard", f"{path}: no `datasource` variable")
    for title, expr in exprs:
        for metric in re.findall(r"\b(pulse_(?:gateway|poller|web)_[a-z0-9_]+)", expr):
            metric_names.add(metric)
            why = registered(ctx, metric) if ctx.have_sources else None
            if why:
                ctx.fail("dashboard", f"{path}: panel '{title}' uses {metric}, but {why}")


def check_dashboards(ctx, texts):
    """texts: {path: JSON text} of deploy/grafana/*.json, sorted."""
    before = ctx.report.mark()
    metric_names = set()
    for path, text in texts.items():
        try:
            dash = json.loads(text)
        except ValueError:
            continue  # reported by the json check
        check_dashboard(ctx, path, dash, metric_names)
    if not texts:
        ctx.fail("dashboard", "no Grafana dashboard under deploy/grafana/")
    if ctx.report.clean_since(before):
        ctx.say("dashboard", f"ok ({len(texts)} dashboard(s), {len(metric_names)} metrics, "
                             f"all registered by the services)")
