"""compose and the Dockerfile: targets, binaries, health checks, Prometheus' mounts."""

import copy
import unittest

from pulse_deploy_check.compose import check_compose, check_nginx
from pulse_deploy_check.dockerfile import check_dockerfile

from . import fixtures

DOCKERFILE = """ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
FROM ${RUST_IMAGE} AS build
FROM ${NODE_IMAGE} AS web-build
FROM ${RUNTIME_IMAGE} AS runtime
FROM runtime AS poller
COPY --from=build /out/pulse-poller /usr/local/bin/pulse-poller
HEALTHCHECK --interval=10s CMD ["/usr/local/bin/pulse-poller", "healthcheck"]
FROM runtime AS gateway
COPY --from=build /out/pulse-gateway /usr/local/bin/pulse-gateway
ENV PULSE_GATEWAY_ADDR=0.0.0.0:8081
HEALTHCHECK --interval=10s CMD ["/usr/local/bin/pulse-gateway", "healthcheck"]
FROM runtime AS web
COPY --from=build /out/pulse-web /usr/local/bin/pulse-web
HEALTHCHECK --interval=10s CMD ["/usr/local/bin/pulse-web", "healthcheck"]
FROM runtime AS simulator
COPY --from=build /out/pulse-simulator /usr/local/bin/pulse-simulator
"""


def service(name):
    return {"build": {"context": ".", "target": name},
            "healthcheck": {"test": ["CMD", f"/usr/local/bin/pulse-{name}", "healthcheck"]}}


COMPOSE = {
    "services": {
        "poller": service("poller"),
        "gateway": {**service("gateway"),
                    "depends_on": {"poller": {"condition": "service_healthy"}}},
        "web": {**service("web"), "ports": ["8080:8080"]},
        "prometheus": {
            "image": "prom/prometheus:v2",
            "ports": ["127.0.0.1:9095:9090"],
            "healthcheck": {"disable": True},
            "volumes": ["./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
                        "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro",
                        "prometheus-data:/prometheus"],
        },
    },
    "volumes": {"prometheus-data": {}},
}
PROMETHEUS = {"rule_files": ["alerts.yml"], "scrape_configs": [
    {"job_name": "gateway", "static_configs": [{"targets": ["gateway:8081"],
                                                "labels": {"service": "pulse-gateway"}}]}]}


def run(compose, dockerfile=DOCKERFILE):
    ctx = fixtures.context(exists=lambda path: True, isdir=lambda path: True)
    ctx.docs_by_file["deploy/prometheus/prometheus.yml"] = [PROMETHEUS]
    check_dockerfile(ctx, dockerfile)
    check_compose(ctx, compose, None)
    return ctx


class ComposeTest(fixtures.CheckTest):
    def test_a_correct_compose_file_passes(self):
        ctx = run(COMPOSE)
        self.assertEqual(ctx.report.errors, [])
        self.assertEqual(ctx.compose_service_of["gateway"], "gateway")
        self.assertIn(("Dockerfile stage gateway", "gateway", {"PULSE_GATEWAY_ADDR": None}),
                      ctx.env_uses)
        self.assertIn("4 services, 3 health checks, disabled with a reason: prometheus",
                      ctx.report.stream.getvalue())

    def test_a_health_check_with_curl_fails(self):
        compose = copy.deepcopy(COMPOSE)
        compose["services"]["web"]["healthcheck"]["test"] = ["CMD", "curl", "-fsS", "http://x"]
        self.assertOnlyError(run(compose), "service web: health check should be")

    def test_alert_rules_not_mounted_fail(self):
        compose = copy.deepcopy(COMPOSE)
        compose["services"]["prometheus"]["volumes"].pop(1)
        self.assertOnlyError(run(compose), "compose mounts deploy/prometheus/alerts.yml at nowhere")

    def test_waiting_on_a_service_without_health_check_fails(self):
        compose = copy.deepcopy(COMPOSE)
        del compose["services"]["poller"]["healthcheck"]
        ctx = run(compose)
        self.assertIn("compose: service gateway waits for poller to be healthy, but poller has "
                      "no health check", ctx.report.errors)

    def test_an_auxiliary_ui_on_every_interface_fails(self):
        compose = copy.deepcopy(COMPOSE)
        compose["services"]["prometheus"]["ports"] = ["9095:9090"]
        self.assertOnlyError(run(compose), "service prometheus publishes 9095:9090 on every "
                                           "interface")
        compose["services"]["prometheus"]["ports"] = [{"target": 9090, "published": 9095}]
        self.assertOnlyError(run(compose), "service prometheus publishes")
        compose["services"]["prometheus"]["ports"] = ["[::1]:9095:9090"]
        self.assertEqual(run(compose).report.errors, [])

    def test_an_unpinned_image_fails(self):
        for image in ("prom/prometheus", "prom/prometheus:latest", "prom/prometheus:main"):
            compose = copy.deepcopy(COMPOSE)
            compose["services"]["prometheus"]["image"] = image
            self.assertOnlyError(run(compose), f"image {image} is not pinned")

    def test_an_unpinned_base_image_fails(self):
        dockerfile = DOCKERFILE.replace("rust:1.95-slim-bookworm", "rust:latest")
        self.assertOnlyError(run(COMPOSE, dockerfile), "base image rust:latest is not pinned")
        dockerfile = DOCKERFILE.replace("ARG RUST_IMAGE=rust:1.95-slim-bookworm\n", "")
        self.assertOnlyError(run(COMPOSE, dockerfile), "names an ARG without a default")

    def test_another_node_than_22_fails(self):
        dockerfile = DOCKERFILE.replace("node:22-bookworm-slim", "node:20-bookworm-slim")
        self.assertOnlyError(run(COMPOSE, dockerfile), "node:20-bookworm-slim is not Node 22")

    def test_a_runtime_with_a_shell_fails(self):
        dockerfile = DOCKERFILE.replace("gcr.io/distroless/cc-debian12:nonroot",
                                        "debian:12-slim")
        ctx = run(COMPOSE, dockerfile)
        self.assertIn("compose: Dockerfile target web runs on debian:12-slim, not a distroless "
                      "image (gcr.io/distroless/...)", ctx.report.errors)
        self.assertEqual(len(ctx.report.errors), 4, ctx.report.errors)

    def test_an_image_health_check_with_curl_or_none_fails(self):
        dockerfile = DOCKERFILE.replace(
            'CMD ["/usr/local/bin/pulse-web", "healthcheck"]',
            "CMD curl -fsS http://127.0.0.1:9080/readyz")
        self.assertOnlyError(run(COMPOSE, dockerfile), "Dockerfile target web: HEALTHCHECK "
                                                       "should run CMD")
        dockerfile = DOCKERFILE.replace(
            'HEALTHCHECK --interval=10s CMD ["/usr/local/bin/pulse-poller", "healthcheck"]\n', "")
        self.assertOnlyError(run(COMPOSE, dockerfile), "Dockerfile target poller: HEALTHCHECK "
                                                       "should run CMD")

    def test_a_missing_target_fails(self):
        ctx = run(COMPOSE, DOCKERFILE.replace(" AS web", " AS website"))
        self.assertIn("compose: Dockerfile has no `web` target", ctx.report.errors)
        self.assertIn("compose: service web: Dockerfile has no target web", ctx.report.errors)


class NginxTest(fixtures.CheckTest):
    CONF = """upstream gateways { server gateway:8081; }
map $http_upgrade $connection_upgrade { default upgrade; }
server { location = /api/v2/ws { proxy_pass http://gateways;
    proxy_set_header Upgrade $http_upgrade; }
  location / { return 404; } }
"""

    def test_balancing_over_compose_services_passes(self):
        ctx = fixtures.context()
        ctx.services = COMPOSE["services"]
        check_nginx(ctx, self.CONF)
        self.assertEqual(ctx.report.errors, [])

    def test_sticky_sessions_fail(self):
        ctx = fixtures.context()
        ctx.services = COMPOSE["services"]
        check_nginx(ctx, self.CONF.replace("{ server", "{ ip_hash; server"))
        self.assertOnlyError(ctx, "pins clients to a gateway")

    def test_proxying_more_than_the_websocket_path_fails(self):
        ctx = fixtures.context()
        ctx.services = COMPOSE["services"]
        check_nginx(ctx, self.CONF.replace("location = /api/v2/ws", "location /"))
        self.assertOnlyError(ctx, "exposes the gateways' /readyz and /metrics")


if __name__ == "__main__":
    unittest.main()
