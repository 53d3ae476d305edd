"""apply: nothing in the base an overlay owns, generated config, migrations, what rolls."""

import copy
import unittest

from pulse_deploy_check.apply import base_checks, check_generated, check_migrations, rolled

from . import fixtures


class BaseTest(unittest.TestCase):
    def test_a_base_without_secrets_passes(self):
        ctx = fixtures.context()
        base_checks(ctx, [fixtures.gateway_deployment()])
        self.assertEqual(ctx.report.errors, [])

    def test_a_secret_in_the_base_fails(self):
        ctx = fixtures.context()
        base_checks(ctx, [{"kind": "Secret", "metadata": {"name": "pulse-secrets"},
                           "stringData": {"PULSE_JWT_SECRET": "REPLACE_ME"}}])
        self.assertIn("the base defines Secret pulse-secrets", ctx.report.errors[0])
        self.assertIn("apply: the base holds a REPLACE_ME placeholder", ctx.report.errors)


class GeneratedTest(fixtures.CheckTest):
    def test_hash_suffixed_config_passes(self):
        self.assertEqual(fixtures.checked(check_generated).report.errors, [])

    def test_a_plain_config_map_fails(self):
        docs = fixtures.gateway_docs()
        fixtures.of_kind(docs, "ConfigMap")["metadata"]["name"] = "pulse-common"
        fixtures.container(docs)["envFrom"][0]["configMapRef"]["name"] = "pulse-common"
        self.assertOnlyError(fixtures.checked(check_generated, docs),
                             "uses ConfigMap pulse-common, which is not generated")


class MigrationsTest(unittest.TestCase):
    def pod(self, main_key, init=True):
        def db(key):
            return {"name": "DATABASE_URL",
                    "valueFrom": {"secretKeyRef": {"name": "pulse-secrets", "key": key}}}
        pod = {"containers": [{"name": "web", "image": "pulse-web", "env": [db(main_key)]}]}
        if init:
            pod["initContainers"] = [{"name": "migrate", "image": "pulse-poller",
                                      "args": ["migrate"], "env": [db("MIGRATE_DATABASE_URL")]}]
        return pod

    def test_own_login_after_migrations_passes(self):
        ctx, b = fixtures.build()
        check_migrations(b, "Deployment", "pulse-web", self.pod("WEB_DATABASE_URL"))
        self.assertEqual(ctx.report.errors, [])

    def test_the_owners_login_fails(self):
        ctx, b = fixtures.build()
        check_migrations(b, "Deployment", "pulse-web", self.pod("MIGRATE_DATABASE_URL"))
        self.assertIn("logs in with the migrations' owner login", ctx.report.errors[0])

    def test_no_migrate_init_container_fails(self):
        ctx, b = fixtures.build()
        check_migrations(b, "Deployment", "pulse-web", self.pod("WEB_DATABASE_URL", init=False))
        self.assertIn("uses the database but has no initContainer", ctx.report.errors[0])


class RolledTest(unittest.TestCase):
    def test_only_the_changed_template_rolls(self):
        before = [fixtures.gateway_deployment()]
        after = copy.deepcopy(before)
        self.assertEqual(rolled(before, after), set())
        after[0]["spec"]["template"]["metadata"]["labels"]["x"] = "y"
        self.assertEqual(rolled(before, after), {"pulse-gateway"})


if __name__ == "__main__":
    unittest.main()
