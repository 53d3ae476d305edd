"""autoscale, alerts and dashboard: every metric they use is registered by a service."""

import unittest

from pulse_deploy_check.alerts import check_cap, check_rules, check_runbook
from pulse_deploy_check.autoscale import alert_cap, check_hpa, served_metrics
from pulse_deploy_check.dashboard import check_dashboard
from pulse_deploy_check.sources import registered

from . import fixtures

GATEWAY_RS = 'metrics.register_gauge("connections", "open WebSockets");'


def context():
    ctx = fixtures.context()
    ctx.sources["gateway"] = {"services/gateway/src/metrics.rs": GATEWAY_RS}
    ctx.have_sources = True
    return ctx


ADAPTER = {"rules": {"custom": [{
    "seriesQuery": 'pulse_gateway_connections{namespace!="",pod!=""}',
    "resources": {"overrides": {"namespace": {"resource": "namespace"}}}}]}}
ALERTS = {"groups": [{"rules": [{
    "alert": "PulseGatewayNearCap",
    "expr": 'max(pulse_gateway_connections{service="pulse-gateway"}) > 0.8 * 50000'}]}]}


def hpa(average):
    return {"spec": {"metrics": [
        {"type": "Pods", "pods": {"metric": {"name": "pulse_gateway_connections"},
                                  "target": {"type": "AverageValue", "averageValue": average}}},
        {"type": "Resource", "resource": {"name": "cpu"}}]}}


class RegisteredTest(unittest.TestCase):
    def test_a_registered_metric_passes(self):
        self.assertIsNone(registered(context(), "pulse_gateway_connections"))

    def test_a_metric_registered_through_the_start_up_kit_passes(self):
        ctx = context()
        ctx.sources["web"] = {"services/web/src/metrics.rs":
                              'login_failures: register(\n    r,\n    "login_failures",\n    "Failed logins",'}
        self.assertIsNone(registered(ctx, "pulse_web_login_failures_total"))
        self.assertEqual(registered(ctx, "pulse_web_logins_total"),
                         'pulse-web registers no metric "logins"')

    def test_an_unregistered_metric_fails(self):
        self.assertEqual(registered(context(), "pulse_gateway_connection"),
                         'pulse-gateway registers no metric "connection"')


class AutoscaleTest(fixtures.CheckTest):
    def run_hpa(self, average):
        ctx = context()
        ctx.cap_rule = alert_cap(ALERTS)
        notes = []
        check_hpa(ctx, "example", "pulse-gateway", hpa(average), served_metrics(ADAPTER),
                  {"namespace", "pod"}, notes)
        return ctx, notes

    def test_a_target_below_the_alert_passes(self):
        ctx, notes = self.run_hpa("20000")
        self.assertEqual(ctx.report.errors, [])
        self.assertEqual(notes, ["20000 connections per pod"])

    def test_a_target_above_the_alert_fails(self):
        ctx, _ = self.run_hpa("45000")
        self.assertOnlyError(ctx, "not below the alert threshold 40000")


class AlertsTest(unittest.TestCase):
    def test_rules_on_registered_metrics_pass(self):
        ctx = context()
        nrules, metrics, _ = check_rules(ctx, ALERTS["groups"])
        self.assertEqual((nrules, metrics), (1, {"pulse_gateway_connections"}))
        # Only the runbook's other metrics are missing.
        self.assertTrue(all(e.startswith("alerts: no alert rule uses ")
                            for e in ctx.report.errors))

    def test_a_rule_on_a_metric_nobody_exports_fails(self):
        ctx = context()
        check_rules(ctx, [{"rules": [{"alert": "X", "expr": "pulse_gateway_connection > 1"}]}])
        self.assertIn('alerts: alert X uses pulse_gateway_connection: pulse-gateway registers '
                      'no metric "connection"', ctx.report.errors)

    def test_the_cap_matching_the_gateways_passes_and_a_different_one_fails(self):
        for cap, errors in (("50000", 0), ("60000", 1)):
            ctx, _ = fixtures.build()
            ctx.cap_rule = alert_cap(ALERTS)
            ctx.env_uses.append(("overlay example: gw", "gateway",
                                 {"PULSE_MAX_CONNECTIONS": cap}))
            check_cap(ctx)
            self.assertEqual(len(ctx.report.errors), errors, cap)
        self.assertIn("assumes PULSE_MAX_CONNECTIONS=50000", ctx.report.errors[0])

    def test_the_runbook_table_lists_every_rule_and_only_rules(self):
        runbook = ("| alert | fires when |\n| --- | --- |\n"
                   "| `PulseGatewayNearCap` | near the cap |\n")
        ctx = context()
        check_runbook(ctx, ALERTS["groups"], runbook)
        self.assertEqual(ctx.report.errors, [])
        ctx = context()
        check_runbook(ctx, ALERTS["groups"] + [{"rules": [{"alert": "PulseNew", "expr": "1"}]}],
                      runbook + "| `PulseGone` | retired |\n")
        self.assertEqual(ctx.report.errors, [
            "alerts: alert PulseNew is not in the alert table of deploy/README.md",
            "alerts: deploy/README.md lists alert PulseGone, which "
            "deploy/prometheus/alerts.yml does not define"])


class DashboardTest(unittest.TestCase):
    def dashboard(self, expr, ids=(1, 2)):
        return {"templating": {"list": [{"name": "datasource"}]},
                "panels": [{"id": ids[0], "title": "row", "panels": [
                    {"id": ids[1], "title": "Connections", "targets": [{"expr": expr}]}]}]}

    def test_panels_on_registered_metrics_pass(self):
        ctx = context()
        names = set()
        check_dashboard(ctx, "d.json", self.dashboard("sum(pulse_gateway_connections)"), names)
        self.assertEqual((ctx.report.errors, names), ([], {"pulse_gateway_connections"}))

    def test_duplicate_ids_and_unknown_metrics_fail(self):
        ctx = context()
        check_dashboard(ctx, "d.json", self.dashboard("pulse_gateway_nope", ids=(1, 1)), set())
        self.assertEqual(ctx.report.errors, [
            "dashboard: d.json: panel ids are not unique",
            "dashboard: d.json: panel 'Connections' uses pulse_gateway_nope, but pulse-gateway "
            "registers no metric \"nope\""])


if __name__ == "__main__":
    unittest.main()
