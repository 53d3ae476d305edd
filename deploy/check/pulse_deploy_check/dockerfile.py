"""The Dockerfile (reported under `compose`): one target per service, each copying its binary.

docker-compose.yml builds these targets and calls the binaries by path in its health checks,
and the variables the stages set count as set for the env check, so they are read here first.
"""

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
