"""kustomize: how the objects of a build hang together, and the Kubernetes schemas."""

import unittest

from pulse_deploy_check.schemas import SchemaCounts, validate_schemas
from pulse_deploy_check.structure import check_structure

from . import fixtures


class StructureTest(fixtures.CheckTest):
    def test_a_correct_build_passes(self):
        ctx = fixtures.checked(check_structure)
        self.assertEqual(ctx.report.errors, [])
        self.assertIn("gateway", [svc for _, svc, _ in ctx.env_uses])

    def test_a_missing_startup_probe_fails(self):
        docs = fixtures.gateway_docs()
        del fixtures.container(docs)["startupProbe"]
        self.assertOnlyError(fixtures.checked(check_structure, docs), "needs a startupProbe")

    def test_a_service_selecting_nothing_fails(self):
        docs = fixtures.gateway_docs()
        fixtures.of_kind(docs, "Service")["spec"]["selector"] = {"app": "nobody"}
        ctx = fixtures.checked(check_structure, docs)
        self.assertTrue(any("matches no pods" in e for e in ctx.report.errors))

    def test_a_missing_config_map_fails(self):
        docs = [d for d in fixtures.gateway_docs() if d["kind"] != "ConfigMap"]
        ctx = fixtures.checked(check_structure, docs)
        self.assertTrue(any(f"envFrom configMapRef {fixtures.CONFIG} does not exist" in e
                            for e in ctx.report.errors))


class SchemaTest(fixtures.CheckTest):
    def test_a_valid_deployment_passes(self):
        ctx = fixtures.context()
        counts = SchemaCounts()
        validate_schemas(ctx, counts, "overlay example", [fixtures.gateway_deployment()])
        self.assertEqual(ctx.report.errors, [])
        self.assertEqual(counts.validated, 1)

    def test_an_unknown_field_fails(self):
        ctx = fixtures.context()
        d = fixtures.gateway_deployment()
        c = d["spec"]["template"]["spec"]["containers"][0]
        c["startupProbes"] = c.pop("startupProbe")
        validate_schemas(ctx, SchemaCounts(), "overlay example", [d])
        self.assertOnlyError(ctx, "Additional properties are not allowed")

    def test_quick_skips_the_schemas(self):
        ctx = fixtures.context(quick=True)
        counts = SchemaCounts()
        validate_schemas(ctx, counts, "overlay example", [{"kind": "Nonsense"}])
        self.assertEqual((ctx.report.errors, counts.validated), ([], 0))


if __name__ == "__main__":
    unittest.main()
