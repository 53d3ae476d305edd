"""The Prometheus alert rules (check `alerts`), beyond what promtool checks.

An alert on a metric nobody exports never fires, so every metric a rule uses must be
registered by the services' sources; a `service` label must be one a scrape job sets; the
rules the runbook relies on must exist; the connection alert fires at CAP_SHARE of the
PULSE_MAX_CONNECTIONS the Kubernetes gateways really have; and the alert table of
deploy/README.md lists every rule, so an operator paged by one finds what it means.
"""

import os
import re

from .images import SERVICES
from .sources import process_metric_state, registered

ALERTS = "deploy/prometheus/alerts.yml"
ALERTS_TEST = "deploy/prometheus/alerts.test.yml"
RUNBOOK = "deploy/README.md"
# The alert on the gateways' connection count, and its share of PULSE_MAX_CONNECTIONS.
CAP_SHARE = 0.8
# Metrics the runbook's alerts must cover.
NEEDED = ("pulse_poller_active", "pulse_gateway_connections",
          "pulse_gateway_nats_slow_consumer_total",
          "pulse_gateway_fanout_latency_seconds_bucket", "process_open_fds", "process_max_fds")


def check_rules(ctx, groups):
    """Returns (number of rules, metrics used, process metrics not exported yet)."""
    alert_metrics = set()
    pending = set()
    service_values = ctx.scrape_services | {f"pulse-{s}" for s in SERVICES}
    nrules = 0
    for group in groups:
        for rule in group.get("rules") or []:
            nrules += 1
            expr = str(rule.get("expr", ""))
            for metric in re.findall(r"\b((?:pulse_(?:gateway|poller|web)|process)_[a-z0-9_]+)",
                                     expr):
                alert_metrics.add(metric)
                if metric.startswith("process_"):
                    state = process_metric_state(ctx, metric)
                    if state == "pending":
                        pending.add(metric)
                    elif state == "no" and ctx.have_sources:
                        ctx.fail("alerts", f"alert {rule.get('alert')} uses {metric}, which no "
                                           f"service exports")
                elif ctx.have_sources:
                    why = registered(ctx, metric)
                    if why:
                        ctx.fail("alerts", f"alert {rule.get('alert')} uses {metric}: {why}")
            for value in re.findall(r'service="([^"]+)"', expr):
                if value not in service_values:
                    ctx.fail("alerts", f"alert {rule.get('alert')} selects service=\"{value}\", "
                                       f"a label no scrape job sets")
    for needed in NEEDED:
        if needed not in alert_metrics:
            ctx.fail("alerts", f"no alert rule uses {needed}")
    return nrules, alert_metrics, pending


def check_cap(ctx):
    """The connection alert's threshold: CAP_SHARE of the gateways' PULSE_MAX_CONNECTIONS."""
    if ctx.cap_rule is None:
        ctx.fail("alerts", "no alert on pulse_gateway_connections > share * cap")
        return
    share, cap, alert = ctx.cap_rule
    if share != CAP_SHARE:
        ctx.fail("alerts", f"alert {alert} fires at {share:g} of the cap, not {CAP_SHARE:g}")
    k8s_caps = {int(e.get("PULSE_MAX_CONNECTIONS") or ctx.readme_default("PULSE_MAX_CONNECTIONS"))
                for where, svc, e in ctx.env_uses
                if svc == "gateway" and where.startswith("overlay")}
    if ctx.builds and k8s_caps != {cap}:
        ctx.fail("alerts", f"alert {alert} assumes PULSE_MAX_CONNECTIONS={cap}, the Kubernetes "
                           f"gateways have {sorted(k8s_caps)}")


def table_alerts(runbook):
    """The alert names of the runbook's table rows (`| `PulseX` | ... |`)."""
    return set(re.findall(r"^\|\s*`(Pulse[A-Za-z0-9]+)`\s*\|", runbook, re.MULTILINE))


def check_runbook(ctx, groups, runbook):
    """Every rule has a row in the runbook's alert table, and every row a rule."""
    rules = {str(r.get("alert")) for g in groups for r in g.get("rules") or [] if r.get("alert")}
    listed = table_alerts(runbook)
    for alert in sorted(rules - listed):
        ctx.fail("alerts", f"alert {alert} is not in the alert table of {RUNBOOK}")
    for alert in sorted(listed - rules):
        ctx.fail("alerts", f"{RUNBOOK} lists alert {alert}, which {ALERTS} does not define")


def check_alerts(ctx, runbook):
    before = ctx.report.mark()
    groups = ctx.first_doc(ALERTS).get("groups") or []
    nrules, alert_metrics, pending = check_rules(ctx, groups)
    check_cap(ctx)
    check_runbook(ctx, groups, runbook)
    if os.path.basename(ALERTS) not in (ctx.first_doc(ALERTS_TEST).get("rule_files") or []):
        ctx.fail("alerts", f"{ALERTS_TEST} does not test {ALERTS}")
    if ctx.report.clean_since(before):
        note = f"; {', '.join(sorted(pending))} not exported by the services yet" if pending else ""
        cap_rule = ctx.cap_rule
        ctx.say("alerts", f"ok ({nrules} rules, {len(alert_metrics)} metrics, all registered"
                          f"{note}; connections alert at {CAP_SHARE:g} x "
                          f"{cap_rule[1] if cap_rule else '?'}; {ctx.promtool_note})")
