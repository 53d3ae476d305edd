"""Offline checks of Pulse's deployment files (Dockerfile, docker-compose.yml, deploy/).

scripts/check-deploy.sh does the shell-side work (kustomize builds, promtool, the compose
plugin, the fault self-test) and then runs this package in the tree to check:

    python -m pulse_deploy_check COMPOSE_TOOL RENDERS_DIR PROMTOOL_NOTE

Each module checks one family and reports under its name (yaml, compose, kustomize, apply,
routes, policy, nats, autoscale, alerts, env, drain, dashboard). The functions take parsed
data through a Context, so the unit tests under deploy/check/tests can run them on small
in-memory manifests without a cluster, kustomize or the real tree.
"""
