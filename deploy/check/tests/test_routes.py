"""routes: only Exact /api/v2/ws reaches the gateways; zone and node spread."""

import unittest

from pulse_deploy_check.routes import check_routes, check_spread

from . import fixtures


class RoutesTest(fixtures.CheckTest):
    def test_the_websocket_route_passes(self):
        self.assertEqual(fixtures.checked(check_routes).report.errors, [])

    def test_a_prefix_route_to_the_gateways_fails(self):
        docs = fixtures.gateway_docs()
        path = fixtures.of_kind(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]
        path.update(path="/", pathType="Prefix")
        self.assertOnlyError(fixtures.checked(check_routes, docs),
                             "Ingress pulse sends Prefix / to the gateways")

    def test_no_route_fails(self):
        docs = [d for d in fixtures.gateway_docs() if d["kind"] != "Ingress"]
        ctx = fixtures.checked(check_routes, docs)
        self.assertIn("routes: overlay example: no public route (Ingress or HTTPRoute)",
                      ctx.report.errors)


class SpreadTest(fixtures.CheckTest):
    def test_zone_and_node_spread_passes(self):
        ctx, b = fixtures.build()
        pod = fixtures.gateway_deployment()["spec"]["template"]["spec"]
        check_spread(b, "pulse-gateway", pod, fixtures.LABELS)
        self.assertEqual(ctx.report.errors, [])

    def test_no_zone_spread_fails(self):
        ctx, b = fixtures.build()
        pod = fixtures.gateway_deployment()["spec"]["template"]["spec"]
        pod["topologySpreadConstraints"].pop(0)
        check_spread(b, "pulse-gateway", pod, fixtures.LABELS)
        self.assertOnlyError(ctx, "is not spread over topology.kubernetes.io/zone")


if __name__ == "__main__":
    unittest.main()
