"""docker-compose.yml and what it wires together (check `compose`).

`docker compose config` (when the plugin is there) only checks the syntax; this checks what
it cannot: build targets, depends_on on health, mounted files that exist, each Pulse
service's own `healthcheck` subcommand (the images carry no HTTP client), the proxy's
upstreams, Prometheus' scrape targets and the rule files it loads, mounted beside its config;
images pinned, and only the public routes (the dashboard, the gateways' proxy) published
beyond 127.0.0.1: the auxiliary UIs (Jaeger, Prometheus, Grafana) are for this machine.
"""

import json
import os
import re

from .dockerfile import pinned
from .images import SERVICES, service_of_image

NGINX_CONF = "deploy/compose/nginx.conf"
PROMETHEUS = "deploy/prometheus/prometheus.yml"


def compose_env(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v if "=" in str(item) else None
        return out
    return {str(k): (None if v is None else str(v)) for k, v in env.items()}


def mounts(svc):
    """[(source, target)] of a compose service's bind mounts and volumes."""
    out = []
    for vol in svc.get("volumes") or []:
        if isinstance(vol, dict):
            out.append((str(vol.get("source", "")), str(vol.get("target", ""))))
        else:
            parts = str(vol).split(":")
            out.append((parts[0], parts[1] if len(parts) > 1 else ""))
    return out


def host_ip(port):
    """The address a compose `ports` entry publishes on; None for every interface."""
    if isinstance(port, dict):
        return port.get("host_ip")
    port = str(port)
    if port.startswith("["):
        return port[1:port.index("]")] if "]" in port else None
    parts = port.split(":")
    return parts[0] if len(parts) == 3 else None


def check_ports(ctx, name, svc, pulse_service):
    """Only the dashboard and the gateways' proxy are published on every interface."""
    public = pulse_service == "web" or any(os.path.normpath(src) == NGINX_CONF
                                           for src, _ in mounts(svc))
    for port in svc.get("ports") or []:
        if not public and host_ip(port) not in ("127.0.0.1", "::1"):
            ctx.fail("compose", f"service {name} publishes {port} on every interface: bind it "
                                f"to 127.0.0.1 (only the dashboard and the gateways' proxy are "
                                f"public)")


def check_services(ctx, compose):
    """The services, their builds, dependencies, mounts and health checks. Fills ctx.services
    and ctx.compose_service_of; returns (health checks, [services with one disabled])."""
    services = ctx.services = compose.get("services") or {}
    if not services:
        ctx.fail("compose", "docker-compose.yml defines no services")
    named_volumes = set((compose.get("volumes") or {}).keys())
    healthchecked = 0
    disabled_checks = []
    for name, svc in services.items():
        svc = svc or {}
        build = svc.get("build")
        target = None
        if build is None and not svc.get("image"):
            ctx.fail("compose", f"service {name} has neither image nor build")
        if isinstance(build, dict):
            target = build.get("target")
            build_ctx = build.get("context", ".")
            if not ctx.isdir(build_ctx):
                ctx.fail("compose", f"service {name}: build context {build_ctx} does not exist")
            if target and target.lower() not in ctx.targets:
                ctx.fail("compose", f"service {name}: Dockerfile has no target {target}")
        pulse_service = target.lower() if target and target.lower() in SERVICES else \
            service_of_image(svc.get("image"))
        ctx.compose_service_of[name] = pulse_service
        image = svc.get("image")
        if image and build is None and not pinned(str(image)):
            ctx.fail("compose", f"service {name}: image {image} is not pinned (a version tag or "
                                f"a digest)")
        check_ports(ctx, name, svc, pulse_service)
        deps = svc.get("depends_on") or {}
        dep_items = deps.items() if isinstance(deps, dict) else [(d, {}) for d in deps]
        for dep, spec in dep_items:
            if dep not in services:
                ctx.fail("compose", f"service {name} depends on unknown service {dep}")
            cond = (spec or {}).get("condition", "service_started")
            if cond not in ("service_started", "service_healthy",
                            "service_completed_successfully"):
                ctx.fail("compose", f"service {name}: unknown depends_on condition {cond}")
            if cond == "service_healthy":
                hc = (services.get(dep) or {}).get("healthcheck") or {}
                if hc.get("disable") or not hc.get("test"):
                    ctx.fail("compose", f"service {name} waits for {dep} to be healthy, "
                                        f"but {dep} has no health check")
        for src, _ in mounts(svc):
            if src.startswith((".", "/")):
                if not ctx.exists(src):
                    ctx.fail("compose", f"service {name} mounts {src}, which does not exist")
            elif src not in named_volumes:
                ctx.fail("compose", f"service {name} uses volume {src}, not declared under "
                                    f"volumes:")
        hc = svc.get("healthcheck")
        if hc and hc.get("disable"):
            disabled_checks.append(name)
        elif hc and hc.get("test"):
            healthchecked += 1
            if pulse_service:
                # The service's own `healthcheck` subcommand (GETs its /readyz): the images
                # carry no HTTP client.
                want = ["CMD", ctx.binary_path.get(pulse_service,
                                                   f"/usr/local/bin/pulse-{pulse_service}"),
                        "healthcheck"]
                if hc["test"] != want:
                    ctx.fail("compose", f"service {name}: health check should be "
                                        f"{json.dumps(want)} (found {json.dumps(hc['test'])})")
        else:
            ctx.fail("compose", f"service {name} has no healthcheck (add one, or disable it "
                                f"explicitly with a comment saying why)")
        ctx.env_uses.append((f"docker-compose.yml service {name}", pulse_service,
                             compose_env(svc)))
    for s in SERVICES:
        if s not in ctx.binary_path:
            ctx.fail("compose", f"Dockerfile stage {s} copies no pulse-{s} binary")
    return healthchecked, disabled_checks


def check_nginx(ctx, text):
    """The proxy balances over compose services, passes the WebSocket upgrade, proxies only the
    WebSocket path, never pins."""
    text = re.sub(r"#.*", "", text)
    upstreams = re.findall(r"upstream\s+\S+\s*\{([^}]*)\}", text)
    hosts = [h for block in upstreams for h in re.findall(r"\bserver\s+([\w.-]+):\d+", block)]
    if not hosts:
        ctx.fail("compose", f"{NGINX_CONF} has no upstream servers")
    for h in hosts:
        if h not in ctx.services:
            ctx.fail("compose", f"{NGINX_CONF} proxies to {h}, not a compose service")
    if "Upgrade" not in text or "$connection_upgrade" not in text:
        ctx.fail("compose", f"{NGINX_CONF} does not pass the WebSocket Upgrade/Connection "
                            f"headers")
    # Only the WebSocket path goes to the gateways: their /readyz and /metrics are not public.
    proxied = re.findall(r"location\s+([^{]*?)\s*\{[^}]*\bproxy_pass\b", text)
    if any(p.split() != ["=", "/api/v2/ws"] for p in proxied):
        ctx.fail("compose", f"{NGINX_CONF} exposes the gateways' /readyz and /metrics: proxy "
                            f"only location = /api/v2/ws")
    if re.search(r"\b(ip_hash|sticky)\b|^\s*hash\s", text, re.M):
        ctx.fail("compose", f"{NGINX_CONF} pins clients to a gateway (no sticky sessions "
                            f"wanted)")


def check_prometheus(ctx, prom_cfg):
    """Prometheus scrapes compose services; its configuration and every rule file it names are
    mounted side by side. Fills ctx.scrape_services."""
    prom = PROMETHEUS
    services = ctx.services
    for job in prom_cfg.get("scrape_configs") or []:
        for sc in job.get("static_configs") or []:
            ctx.scrape_services.add((sc.get("labels") or {}).get("service"))
            for t in sc.get("targets") or []:
                host = str(t).rsplit(":", 1)[0]
                if host not in services and host != "localhost":
                    ctx.fail("compose", f"{prom}: job {job.get('job_name')} scrapes {t}, "
                                        f"not a compose service")
    prom_svc = next((s for n, s in services.items()
                     if "prom/prometheus" in str((s or {}).get("image", ""))), None)
    rule_files = prom_cfg.get("rule_files") or []
    if prom_svc is None:
        ctx.fail("compose", "no Prometheus service (image prom/prometheus) in docker-compose.yml")
    else:
        mounted = {os.path.normpath(src): tgt for src, tgt in mounts(prom_svc)}
        cfg_target = mounted.get(os.path.normpath(prom))
        if not cfg_target:
            ctx.fail("compose", f"Prometheus does not mount {prom}")
        for rf in rule_files:
            src = os.path.normpath(os.path.join(os.path.dirname(prom), rf))
            if not ctx.exists(src):
                ctx.fail("compose", f"{prom} loads rule file {rf}, which does not exist next "
                                    f"to it")
            elif cfg_target and mounted.get(src) != os.path.normpath(
                    os.path.join(os.path.dirname(cfg_target), rf)):
                ctx.fail("compose", f"Prometheus loads {rf} from next to its configuration, "
                                    f"but compose mounts {src} at {mounted.get(src) or 'nowhere'}")
    if "alerts.yml" not in rule_files:
        ctx.fail("compose", f"{prom} does not load alerts.yml (rule_files)")


def check_compose(ctx, compose, nginx_text):
    """All of the above; nginx_text is None when there is no deploy/compose/nginx.conf."""
    before = ctx.report.mark()
    healthchecked, disabled_checks = check_services(ctx, compose)
    if nginx_text is not None:
        check_nginx(ctx, nginx_text)
    check_prometheus(ctx, ctx.first_doc(PROMETHEUS))
    if ctx.report.clean_since(before):
        tool = "docker compose config -q, " if ctx.compose_tool != "none" else \
            "no docker compose plugin, parsed with python; "
        disabled = ", ".join(disabled_checks) or "none"
        ctx.say("compose", f"ok ({tool}{len(ctx.services)} services, {healthchecked} health "
                           f"checks, disabled with a reason: {disabled})")
