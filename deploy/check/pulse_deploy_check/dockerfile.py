"""The Dockerfile (reported under `compose`): one target per service, each copying its binary.

docker-compose.yml builds these targets and calls the binaries by path in its health checks,
and the variables the stages set count as set for the env check, so they are read here first.
The base images are pinned (Node 22, a Rust release), the services run on a distroless image,
and each service's image checks its health with its own `healthcheck` subcommand: the runtime
has no shell and no HTTP client.
"""

import json
import re

from .images import SERVICES


def check_dockerfile(ctx, dockerfile):
    """Fills ctx.targets and ctx.binary_path and adds each stage's ENV to ctx.env_uses."""
    ctx.targets = {m.lower() for m in re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", dockerfile)}
    for s in SERVICES:
        if s not in ctx.targets:
            ctx.fail("compose", f"Dockerfile has no `{s}` target")
    stage = None
    for line in dockerfile.splitlines():
        m = re.match(r"(?i)^FROM\s+\S+(?:\s+AS\s+(\S+))?", line)
        if m:
            stage = (m.group(1) or "").lower()
            continue
        m = re.match(r"(?i)^COPY\s+--from=\S+\s+\S*/(pulse-\w+)\s+(\S+)", line)
        if m and stage in SERVICES:
            ctx.binary_path[stage] = m.group(2)
        m = re.match(r"(?i)^ENV\s+(.*)", line)
        if m:
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", m.group(1))
            ctx.env_uses.append((f"Dockerfile stage {stage}", stage if stage in SERVICES else None,
                                 {n: None for n in names}))
    check_base_images(ctx, dockerfile)


# What the runtime images are built on: no shell, no package manager, no HTTP client.
DISTROLESS = "gcr.io/distroless/"
# The services whose images check their own health (the simulator serves no ops endpoint).
HEALTHCHECKED = ("poller", "gateway", "web")


def pinned(image):
    """Whether an image reference names one release: a digest, or a tag with a version number
    in it (`rust:1.95-slim-bookworm`, `node:22-bookworm-slim`, `...:nonroot` of a versioned
    repository such as `distroless/cc-debian12`), never `latest` or no tag at all."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag or tag == "latest":
        return False
    return any(c.isdigit() for c in tag) or any(c.isdigit() for c in name.rsplit("/", 1)[-1])


def check_base_images(ctx, dockerfile):
    """Every base image pinned, Node 22 for the dashboard, distroless under every service, and
    each served service's HEALTHCHECK running its own binary's `healthcheck`."""
    args = dict(re.findall(r"(?m)^ARG\s+([A-Za-z_][A-Za-z0-9_]*)=(\S+)", dockerfile))
    base_of = {}  # stage: the stage or image it is built FROM
    healthchecks = {}
    stage = None
    for line in dockerfile.splitlines():
        m = re.match(r"(?i)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line)
        if m:
            image = re.sub(r"\$\{?(\w+)\}?", lambda v: args.get(v.group(1), v.group(0)),
                           m.group(1))
            stage = (m.group(2) or "").lower()
            if image.lower() in base_of:
                base_of[stage] = image.lower()
                continue
            base_of[stage] = image
            if "$" in image:
                ctx.fail("compose", f"Dockerfile stage {stage}: FROM {m.group(1)} names an ARG "
                                    f"without a default")
            elif not pinned(image):
                ctx.fail("compose", f"Dockerfile stage {stage}: base image {image} is not "
                                    f"pinned (a version tag or a digest)")
            elif image.startswith("node:") and not image.startswith("node:22"):
                ctx.fail("compose", f"Dockerfile stage {stage}: {image} is not Node 22")
            continue
        m = re.match(r"(?i)^HEALTHCHECK\s+(.*)", line)
        if m:
            healthchecks[stage] = m.group(1)
    for s in SERVICES:
        image, hops = base_of.get(s), 0
        while image in base_of and hops < len(base_of):
            image, hops = base_of[image], hops + 1
        if image is not None and not image.startswith(DISTROLESS):
            ctx.fail("compose", f"Dockerfile target {s} runs on {image}, not a distroless image "
                                f"({DISTROLESS}...)")
    for s in HEALTHCHECKED:
        want = [ctx.binary_path.get(s, f"/usr/local/bin/pulse-{s}"), "healthcheck"]
        hc = healthchecks.get(s, "")
        m = re.search(r"(?i)\bCMD\s+(\[.*\])\s*$", hc)
        try:
            found = json.loads(m.group(1)) if m else None
        except ValueError:
            found = None
        if found != want:
            ctx.fail("compose", f"Dockerfile target {s}: HEALTHCHECK should run CMD "
                                f"{json.dumps(want)} (found {hc or 'none'})")
