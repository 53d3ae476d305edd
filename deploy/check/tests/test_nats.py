"""nats: the Helm values grant each user exactly the README's permissions."""

import unittest

from pulse_deploy_check.nats import check_logins, check_nats, hcl_users

from . import fixtures

README = '''Users:

```hcl
accounts {
  PULSE {
    users: [
      {
        user: pulse-gateway
        password: $GATEWAY_PASSWORD
        permissions: {
          publish: { allow: ["_INBOX.>", "$JS.API.>"] }
          subscribe: { allow: ["pulse.>"] }
        }
      }
    ]
  }
}
```
'''


def values(publish):
    return {"container": {"env": {"GATEWAY_PASSWORD": {"valueFrom": {}}}},
            "config": {"merge": {"accounts": {"PULSE": {
                "jetstream": "enabled",
                "users": [{"user": "pulse-gateway", "password": "<< $GATEWAY_PASSWORD >>",
                           "permissions": {"publish": {"allow": publish},
                                           "subscribe": {"allow": ["pulse.>"]}}}]}}}}}


class ValuesTest(fixtures.CheckTest):
    def test_hcl_users_are_read(self):
        self.assertEqual(hcl_users(README),
                         {"pulse-gateway": ("$GATEWAY_PASSWORD", ["$JS.API.>", "_INBOX.>"],
                                            ["pulse.>"])})

    def test_values_as_documented_pass(self):
        ctx = fixtures.context(quick=True)
        ctx.docs_by_file["deploy/k8s/nats/values.yaml"] = [values(["$JS.API.>", "_INBOX.>"])]
        check_nats(ctx, README)
        self.assertEqual(ctx.report.errors, [])

    def test_a_publish_allow_drifting_from_the_readme_fails(self):
        ctx = fixtures.context(quick=True)
        ctx.docs_by_file["deploy/k8s/nats/values.yaml"] = [values(["_INBOX.>"])]
        check_nats(ctx, README)
        self.assertOnlyError(ctx, "user pulse-gateway's publish allow differs")

    def test_no_hcl_block_fails(self):
        ctx = fixtures.context(quick=True)
        check_nats(ctx, "no block here")
        self.assertIn("has no ```hcl block with users", ctx.report.errors[0])


class LoginTest(fixtures.CheckTest):
    def test_the_gateway_logging_in_as_itself_passes(self):
        ctx, _ = fixtures.build()
        check_logins(ctx)
        self.assertEqual(ctx.report.errors, [])

    def test_the_gateway_logging_in_as_the_poller_fails(self):
        docs = fixtures.gateway_docs()
        fixtures.of_kind(docs, "Secret")["stringData"]["GATEWAY_NATS_URL"] = \
            "nats://pulse-poller:secret@nats.nats:4222"
        ctx, _ = fixtures.build(docs)
        check_logins(ctx)
        self.assertOnlyError(ctx, "NATS_URL (GATEWAY_NATS_URL) does not log in as pulse-gateway")


if __name__ == "__main__":
    unittest.main()
