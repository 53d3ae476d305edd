"""policy: default deny, and each pod allowed exactly what its configuration uses."""

import unittest

from pulse_deploy_check.networkpolicy import check_nats_side, check_policy, peer_key

from . import fixtures

NATS_SIDE = "deploy/k8s/nats/networkpolicy.yaml"


def nats_side(labels):
    return [{"kind": "NetworkPolicy", "spec": {"ingress": [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "pulse"}},
                  "podSelector": {"matchLabels": labels}}],
        "ports": [{"port": 4222}]}]}}]


class PolicyTest(fixtures.CheckTest):
    def test_exactly_what_the_gateway_uses_passes(self):
        ctx, b = fixtures.build()
        summary = check_policy(b)
        self.assertEqual(ctx.report.errors, [])
        self.assertEqual(summary, ["pulse-gateway: out 4222+dns, in 8081"])

    def test_no_default_deny_fails(self):
        docs = [d for d in fixtures.gateway_docs() if d["metadata"]["name"] != "default-deny"]
        self.assertOnlyError(fixtures.checked(check_policy, docs), "no default-deny NetworkPolicy")

    def test_egress_it_does_not_use_fails(self):
        docs = fixtures.gateway_docs()
        pol = fixtures.of_kind(docs, "NetworkPolicy", "pulse-gateway")
        pol["spec"]["egress"].append({"to": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "postgres"}}}], "ports": [{"port": 5432}]})
        self.assertOnlyError(fixtures.checked(check_policy, docs),
                             "pulse-gateway: NetworkPolicy allows egress to port 5432")

    def test_ingress_it_does_not_serve_fails(self):
        docs = fixtures.gateway_docs()
        pol = fixtures.of_kind(docs, "NetworkPolicy", "pulse-gateway")
        pol["spec"]["ingress"][0]["ports"].append({"port": 9999})
        self.assertOnlyError(fixtures.checked(check_policy, docs),
                             "pulse-gateway: NetworkPolicy allows ingress on port 9999/TCP, "
                             "which serves nothing routed or scraped")

    def test_missing_nats_egress_fails(self):
        docs = fixtures.gateway_docs()
        pol = fixtures.of_kind(docs, "NetworkPolicy", "pulse-gateway")
        pol["spec"]["egress"].pop(0)
        ctx = fixtures.checked(check_policy, docs)
        self.assertIn("pulse-gateway needs egress to NATS", ctx.report.errors[0])

    def test_a_peer_in_any_namespace_is_too_wide(self):
        self.assertIsNone(peer_key({"namespaceSelector": {}}, "pulse"))
        self.assertIsNone(peer_key({"ipBlock": {"cidr": "0.0.0.0/0"}}, "pulse"))
        self.assertEqual(peer_key({"podSelector": {"matchLabels": {"a": "b"}}}, "pulse"),
                         ("pulse", (("a", "b"),)))


class NatsSideTest(fixtures.CheckTest):
    def test_the_nats_side_letting_the_gateway_in_passes(self):
        ctx, b = fixtures.build()
        ctx.docs_by_file[NATS_SIDE] = nats_side(fixtures.LABELS)
        check_nats_side(b)
        self.assertEqual(ctx.report.errors, [])

    def test_the_nats_side_keeping_the_gateway_out_fails(self):
        ctx, b = fixtures.build()
        ctx.docs_by_file[NATS_SIDE] = nats_side({"app.kubernetes.io/name": "pulse-web"})
        check_nats_side(b)
        self.assertOnlyError(
            ctx, "does not let Deployment pulse-gateway (namespace pulse) reach NATS")


if __name__ == "__main__":
    unittest.main()
