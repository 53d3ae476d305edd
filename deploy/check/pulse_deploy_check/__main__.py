"""Entry point: `python -m pulse_deploy_check COMPOSE_TOOL RENDERS_DIR PROMTOOL_NOTE`.

Run in the root of the tree to check (scripts/check-deploy.sh runs it in the repository and
in each fault self-test's copy). COMPOSE_TOOL names what already parsed docker-compose.yml
("none" without the plugin), RENDERS_DIR holds the kustomize builds ("" without kustomize),
PROMTOOL_NOTE is promtool's result for the alerts summary. CHECK_DEPLOY_QUICK=1 skips the
slower parts (schemas, nats-server). Exits 1 with the reasons when a check fails.
"""

import glob
import os
import sys

from .alerts import check_alerts
from .autoscale import check_autoscale
from .compose import NGINX_CONF, check_compose
from .context import Context
from .dashboard import check_dashboards
from .dockerfile import check_dockerfile
from .drain import check_drain
from .env import check_env
from .kustomize import check_builds
from .nats import NATS_README, check_nats, find_nats_server
from .sources import load_sources
from .yamlfiles import check_yaml, read


def read_or_none(path):
    return read(path) if os.path.exists(path) else None


def main(argv):
    if len(argv) != 3:
        print("usage: python -m pulse_deploy_check COMPOSE_TOOL RENDERS_DIR PROMTOOL_NOTE",
              file=sys.stderr)
        return 2
    compose_tool, renders_dir, promtool_note = argv
    ctx = Context(quick=os.environ.get("CHECK_DEPLOY_QUICK") == "1", compose_tool=compose_tool,
                  renders_dir=renders_dir, promtool_note=promtool_note)
    check_yaml(ctx, ["docker-compose.yml"] + sorted(
        p for p in glob.glob("deploy/**/*", recursive=True)
        if p.endswith((".yml", ".yaml")) and os.path.isfile(p)))
    ctx.readme = read_or_none("README.md") or ""
    load_sources(ctx)
    check_dockerfile(ctx, read("Dockerfile"))
    check_compose(ctx, ctx.first_doc("docker-compose.yml"), read_or_none(NGINX_CONF))
    check_builds(ctx)
    check_nats(ctx, read_or_none(NATS_README), find_nats_server())
    check_autoscale(ctx)
    check_alerts(ctx, read("deploy/README.md"))
    check_env(ctx)
    check_drain(ctx)
    check_dashboards(ctx, {p: read(p) for p in sorted(glob.glob("deploy/grafana/*.json"))})
    if ctx.report.errors:
        ctx.report.print_errors()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
