"""What the checks share: the parsed files, the service sources and the rendered builds.

The families cross-check each other (an alert's threshold against the gateways' setting in
the overlays, a Service's port against a NetworkPolicy, ...), so they read from and add to
one Context instead of each re-reading the tree. Tests build a Context by hand.
"""

import os
import re

from .images import SERVICES
from .report import Report


class Context:
    def __init__(self, report=None, *, quick=False, compose_tool="none", renders_dir="",
                 promtool_note="", exists=os.path.exists, isdir=os.path.isdir):
        self.report = report or Report()
        # CHECK_DEPLOY_QUICK=1: skip the slower parts (schemas, nats-server).
        self.quick = quick
        self.compose_tool = compose_tool
        self.renders_dir = renders_dir
        self.promtool_note = promtool_note
        self.exists = exists
        self.isdir = isdir
        # {path: [documents]} of every YAML file.
        self.docs_by_file = {}
        self.readme = ""
        # {service, "common" or "db": {path: text}} of the Rust sources.
        self.sources = {s: {} for s in SERVICES + ("common", "db")}
        # {service: {variables it reads}}; empty without the sources.
        self.reads = {}
        self.have_sources = False
        # (where, service or None, {name: value or None}) for every container the files define.
        self.env_uses = []
        # From the Dockerfile: its targets and where each service's stage puts its binary.
        self.targets = set()
        self.binary_path = {}
        # From docker-compose.yml and Prometheus' configuration.
        self.services = {}
        self.compose_service_of = {}
        self.scrape_services = set()
        # Rendered kustomize builds: {name: [documents]}, the overlays' names and their Builds.
        self.renders = {}
        self.overlays = []
        self.builds = {}
        # (share, cap, alert name) of the alert on the gateways' connection count, or None.
        self.cap_rule = None

    def fail(self, check, text):
        self.report.fail(check, text)

    def say(self, check, text):
        self.report.say(check, text)

    def first_doc(self, path):
        return (self.docs_by_file.get(path) or [{}])[0] or {}

    @property
    def documented(self):
        return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", self.readme))

    def readme_default(self, name):
        m = re.search(r"\|\s*`%s`\s*\|\s*`([^`]*)`" % re.escape(name), self.readme)
        return m.group(1) if m else None

    @property
    def read_by_any(self):
        return set().union(*self.reads.values()) if self.reads else set()
