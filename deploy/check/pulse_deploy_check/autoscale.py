"""The gateway HPA's custom metric (check `autoscale`).

An HPA on a metric nobody serves silently never scales: the metric must come from a
prometheus-adapter rule, over a series the gateways register, with labels the scrape job
sets, and aim below the connection alert's threshold (else it alerts before it scales).
"""

import re

from .sources import registered

ADAPTER = "deploy/k8s/prometheus-adapter/values.yaml"
PODS_JOB = "deploy/prometheus/kubernetes-pods.yml"
ALERTS = "deploy/prometheus/alerts.yml"


def alert_cap(alerts_doc):
    """(share, cap, alert name) of the alert on pulse_gateway_connections > share * cap."""
    for group in alerts_doc.get("groups") or []:
        for rule in group.get("rules") or []:
            m = re.search(r"pulse_gateway_connections\b[^>]*>\s*([0-9.]+)\s*\*\s*([0-9]+)",
                          str(rule.get("expr", "")))
            if m:
                return float(m.group(1)), int(m.group(2)), rule.get("alert")
    return None


def served_metrics(adapter_doc):
    """{metric name: (series, rule)} the adapter's custom rules serve."""
    served = {}
    for r in ((adapter_doc.get("rules") or {}).get("custom")) or []:
        series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", str(r.get("seriesQuery", "")))
        name_as = ((r.get("name") or {}).get("as")) or (series.group(1) if series else None)
        served[name_as] = (series.group(1) if series else None, r)
    return served


def check_hpa(ctx, bname, hname, hpa, served, relabelled, notes):
    spec = hpa.get("spec") or {}
    kinds = [m.get("type") for m in spec.get("metrics") or []]
    if "Pods" not in kinds or "Resource" not in kinds:
        ctx.fail("autoscale", f"overlay {bname}: HPA {hname} should scale on a pods metric "
                              f"(connections) and CPU (found {kinds})")
    for m in spec.get("metrics") or []:
        if m.get("type") != "Pods":
            continue
        metric = ((m.get("pods") or {}).get("metric") or {}).get("name")
        target = ((m.get("pods") or {}).get("target")) or {}
        if metric not in served:
            ctx.fail("autoscale", f"overlay {bname}: HPA {hname} scales on {metric}, which no "
                                  f"rule in {ADAPTER} serves")
            continue
        series, rule = served[metric]
        why = registered(ctx, series) if series else "no seriesQuery"
        if why:
            ctx.fail("autoscale", f"{ADAPTER}: {metric} comes from {series}: {why}")
        for label in ((rule.get("resources") or {}).get("overrides") or {}):
            if label not in relabelled:
                ctx.fail("autoscale", f"{ADAPTER} maps label {label} to a resource, but "
                                      f"{PODS_JOB} sets no such label")
        if metric == "pulse_gateway_connections":
            value = float(str(target.get("averageValue", "0")))
            cap_rule = ctx.cap_rule
            if cap_rule is None:
                ctx.fail("autoscale", "no alert on pulse_gateway_connections > share * cap in "
                                      "deploy/prometheus/alerts.yml")
            elif value >= cap_rule[0] * cap_rule[1]:
                ctx.fail("autoscale", f"overlay {bname}: HPA {hname} aims at {value:g} "
                                      f"connections per pod, not below the alert threshold "
                                      f"{cap_rule[0] * cap_rule[1]:g}")
            notes.append(f"{value:g} connections per pod")


def check_autoscale(ctx):
    """Also sets ctx.cap_rule, which the alerts check uses."""
    before = ctx.report.mark()
    served = served_metrics(ctx.first_doc(ADAPTER))
    relabelled = {rc.get("target_label")
                  for job in ctx.first_doc(PODS_JOB).get("scrape_configs") or []
                  for rc in job.get("relabel_configs") or []}
    ctx.cap_rule = alert_cap(ctx.first_doc(ALERTS))
    notes = []
    for bname, b in ctx.builds.items():
        for hname, hpa in b.kind("HorizontalPodAutoscaler").items():
            check_hpa(ctx, bname, hname, hpa, served, relabelled, notes)
    if ctx.report.clean_since(before) and ctx.builds:
        ctx.say("autoscale", f"ok (gateway HPA on {', '.join(sorted(set(notes)))} and CPU; the "
                             f"adapter rule serves it from labels {PODS_JOB} sets)")
