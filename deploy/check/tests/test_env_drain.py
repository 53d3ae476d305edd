"""env (every PULSE_* variable documented, each only where read) and drain (grace periods)."""

import copy
import unittest

from pulse_deploy_check.drain import check_drain, seconds
from pulse_deploy_check.env import check_env
from pulse_deploy_check.sources import library_crates

from . import fixtures

README = "| `PULSE_DRAIN_SECONDS` | `10` | gateway |\n| `PULSE_POLL_SECONDS` | `5` | poller |\n"


class EnvTest(unittest.TestCase):
    def errors_setting(self, env):
        """What check_env reports when compose gives the gateway ENV."""
        ctx = fixtures.context()
        ctx.readme = README
        ctx.reads = {"gateway": {"PULSE_DRAIN_SECONDS"}, "poller": {"PULSE_POLL_SECONDS"},
                     "web": set(), "simulator": set()}
        ctx.env_uses.append(("compose gateway", "gateway", env))
        check_env(ctx)
        return ctx.report.errors

    def test_documented_variables_where_they_are_read_pass(self):
        self.assertEqual(self.errors_setting({"PULSE_DRAIN_SECONDS": "20"}), [])

    def test_an_undocumented_variable_fails(self):
        self.assertEqual(self.errors_setting({"PULSE_DRAIN_SECOND": "20"}), [
            "env: compose gateway sets PULSE_DRAIN_SECOND, which README.md does not document "
            "(a name no service reads?)"])

    def test_another_services_variable_fails(self):
        self.assertEqual(self.errors_setting({"PULSE_POLL_SECONDS": "5"}), [
            "env: compose gateway sets PULSE_POLL_SECONDS, which pulse-gateway does not read "
            "(only poller do)"])

    def test_an_undocumented_variable_in_a_config_map_fails(self):
        docs = fixtures.gateway_docs()
        fixtures.of_kind(docs, "ConfigMap")["data"]["PULSE_DRAIN_SECOND"] = "20"
        ctx, _ = fixtures.build(docs)
        ctx.readme = README
        check_env(ctx)
        self.assertEqual(ctx.report.errors, [
            f"env: overlay example: ConfigMap {fixtures.CONFIG} has PULSE_DRAIN_SECOND, which "
            "README.md does not document"])


class DrainTest(fixtures.CheckTest):
    def test_grace_beyond_prestop_and_drain_passes(self):
        ctx, _ = fixtures.build()
        ctx.readme = README
        check_drain(ctx)
        self.assertEqual(ctx.report.errors, [])
        self.assertIn("pulse-gateway: grace 35 s > preStop 5 + 20 + 5",
                      ctx.report.stream.getvalue())

    def test_too_short_a_grace_fails_a_drain_written_as_a_duration_too(self):
        for grace, drain, need in ((25, "20", "20 + 5 s = 30 s"), (35, "1m", "60 + 5 s = 70 s")):
            docs = fixtures.gateway_docs()
            fixtures.of_kind(docs, "Deployment")["spec"]["template"]["spec"][
                "terminationGracePeriodSeconds"] = grace
            fixtures.of_kind(docs, "ConfigMap")["data"]["PULSE_DRAIN_SECONDS"] = drain
            ctx, _ = fixtures.build(docs)
            check_drain(ctx)
            self.assertOnlyError(ctx, f"terminationGracePeriodSeconds {grace} must exceed "
                                      f"preStop 5 s + PULSE_DRAIN_SECONDS {need}")

    def test_a_web_pod_outlasts_its_slowest_request(self):
        docs = fixtures.gateway_docs()
        web = copy.deepcopy(fixtures.of_kind(docs, "Deployment"))
        web["metadata"]["name"] = "pulse-web"
        web["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/example/pulse-web:1"
        docs.append(web)
        ctx, _ = fixtures.build(docs)
        check_drain(ctx)
        self.assertOnlyError(ctx, "Deployment pulse-web: terminationGracePeriodSeconds 35 must "
                                  "exceed preStop 5 s + PULSE_HTTP_TIMEOUT_SECONDS 30 + 1 s = 36 s")
        web["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 40
        ctx, _ = fixtures.build(docs)
        check_drain(ctx)
        self.assertEqual(ctx.report.errors, [])

    def test_a_short_compose_stop_grace_period_fails(self):
        ctx = fixtures.context()
        ctx.services = {"gateway-1": {"stop_grace_period": "10s"}}
        ctx.compose_service_of = {"gateway-1": "gateway"}
        check_drain(ctx)
        self.assertIn("stop_grace_period 10 s must exceed PULSE_DRAIN_SECONDS 10",
                      ctx.report.errors[0])

    def test_no_gateway_fails(self):
        ctx = fixtures.context()
        check_drain(ctx)
        self.assertEqual(ctx.report.errors, [
            "drain: found no gateway in the Kubernetes overlays or docker-compose.yml"])

    def test_compose_durations(self):
        self.assertEqual([seconds("1m30s", 0), seconds("500ms", 0), seconds(None, 10.0),
                          seconds(20, 0)], [90.0, 0.5, 10.0, 20.0])


if __name__ == "__main__":
    unittest.main()


class LibraryCratesTest(unittest.TestCase):
    def test_only_libraries_under_dependencies_count(self):
        cargo = ("[package]\nname = \"pulse-web\"\n\n[dependencies]\naxum.workspace = true\n"
                 "pulse-common.workspace = true\npulse-db = { path = \"../db\" }\n\n"
                 "[dev-dependencies]\npulse-test-support.workspace = true\n")
        self.assertEqual(library_crates(cargo), ["common", "db"])
        self.assertEqual(library_crates("[dependencies]\ntokio = \"1\"\n[dev-dependencies]\n"
                                        "pulse-db.workspace = true\n"), [])
