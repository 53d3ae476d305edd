"""What the services' Rust sources declare: the variables each reads, the metrics each registers.

The manifests, alerts and dashboard must only use names the code really has; reading the
sources (rather than keeping a list here) keeps the two from drifting.
"""

import glob
import os
import re

from .images import SERVICES
from .yamlfiles import read


def declared_vars(texts):
    """Variables read by clap `env = "..."` and std::env::var("...") in these sources."""
    names = set()
    for text in texts:
        names.update(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
        names.update(re.findall(r'env::var(?:_os)?\(\s*"([A-Z][A-Z0-9_]*)"', text))
    return names


def library_crates(cargo_toml):
    """The workspace libraries (`pulse-common`, `pulse-db`) a service's Cargo.toml lists under
    [dependencies], as folder names under services/: settings they declare are the service's."""
    section, found = None, []
    for line in cargo_toml.splitlines():
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            section = header.group(1).strip()
        elif section == "dependencies":
            lib = re.match(r"\s*pulse-(common|db)\b", line)
            if lib:
                found.append(lib.group(1))
    return found


def load_sources(ctx):
    """Fills ctx.sources, ctx.have_sources and ctx.reads from services/ (each service reads its
    own variables and those of the workspace libraries it depends on: services/common, shared
    by all, and services/db, for those with a database)."""
    for s in SERVICES + ("common", "db"):
        ctx.sources[s] = {p: read(p)
                          for p in glob.glob(f"services/{s}/src/**/*.rs", recursive=True)}
    ctx.have_sources = all(os.path.isdir(f"services/{s}/src") for s in SERVICES)
    if ctx.have_sources:
        for s in SERVICES:
            libs = set(library_crates(read(f"services/{s}/Cargo.toml"))) | {"common"}
            texts = list(ctx.sources[s].values())
            for lib in sorted(libs):
                texts += list(ctx.sources[lib].values())
            ctx.reads[s] = declared_vars(texts)


def registered(ctx, metric):
    """None when pulse-<svc> registers the metric (suffixes _total/_bucket/... allowed), else
    the reason it does not."""
    m = re.match(r"pulse_(gateway|poller|web)_([a-z0-9_]+)$", metric)
    if not m:
        return f"{metric} is not a pulse_<service>_ metric"
    svc, name = m.groups()
    base_name = re.sub(r"_(total|bucket|sum|count)$", "", name)
    # `registry.register("name", …)`, `metrics.register_gauge("name", …)`, or the start-up
    # kit's `register(registry, "name", …)`.
    pattern = re.compile(r'\bregister\w*\(\s*(?:[A-Za-z_][\w.]*\s*,\s*)?"%s"' % re.escape(base_name))
    if not any(pattern.search(t) for t in ctx.sources[svc].values()):
        return f"pulse-{svc} registers no metric \"{base_name}\""
    return None


def process_metric_state(ctx, metric):
    """'yes' when a service source registers the process metric, 'pending' when no source
    registers any process metric yet, 'no' when some are registered but not this one."""
    short = metric[len("process_"):]
    texts = [t for d in ctx.sources.values() for t in d.values()]
    if any(f'"{metric}"' in t or (f'"{short}"' in t and '"process' in t) for t in texts):
        return "yes"
    if any(re.search(r'"process(_[a-z_]+)?"', t) for t in texts):
        return "no"
    return "pending"
