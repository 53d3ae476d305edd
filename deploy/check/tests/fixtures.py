"""A small, correct overlay build (one gateway) that the tests break one piece at a time.

Built fresh on each call so a test can edit it in place; `checked` runs one check on it and
`CheckTest` asserts on what the check reported.
"""

import copy
import io
import unittest

from pulse_deploy_check.builds import Build
from pulse_deploy_check.context import Context
from pulse_deploy_check.report import Report

LABELS = {"app.kubernetes.io/name": "pulse-gateway"}
CONFIG = "pulse-gateway-abcde12345"
SECRET = "pulse-secrets-abcde12345"


def context(**kwargs):
    """A Context whose summaries go to a buffer instead of stderr."""
    return Context(Report(stream=io.StringIO()), **kwargs)


def gateway_deployment():
    container = {
        "name": "gateway",
        "image": "ghcr.io/example/pulse-gateway:1.0",
        "ports": [{"name": "ws", "containerPort": 8081}],
        "envFrom": [{"configMapRef": {"name": CONFIG}}],
        "env": [{"name": "NATS_URL",
                 "valueFrom": {"secretKeyRef": {"name": SECRET, "key": "GATEWAY_NATS_URL"}}}],
        "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False},
        "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}},
        "startupProbe": {"httpGet": {"path": "/healthz", "port": "ws"}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "ws"}},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "ws"}},
        "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
    }
    spread = [{"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
               "labelSelector": {"matchLabels": dict(LABELS)}}
              for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "pulse-gateway", "namespace": "pulse"},
        "spec": {
            "selector": {"matchLabels": dict(LABELS)},
            "template": {
                "metadata": {"labels": dict(LABELS),
                             "annotations": {"prometheus.io/scrape": "true",
                                             "prometheus.io/port": "8081"}},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 35,
                         "topologySpreadConstraints": spread},
            },
        },
    }


def network_policies():
    dns = [{"to": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "kube-system"}}}],
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}]
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "default-deny", "namespace": "pulse"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "pulse-gateway", "namespace": "pulse"},
         "spec": {
             "podSelector": {"matchLabels": dict(LABELS)},
             "policyTypes": ["Ingress", "Egress"],
             "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                 "kubernetes.io/metadata.name": "ingress-nginx"}}}],
                 "ports": [{"port": 8081}]}],
             "egress": [{"to": [{"namespaceSelector": {"matchLabels": {
                 "kubernetes.io/metadata.name": "nats"}}}],
                 "ports": [{"port": 4222}]}] + dns,
         }},
    ]


def gateway_docs():
    """The documents of a correct overlay build."""
    return [
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": CONFIG, "namespace": "pulse"},
         "data": {"PULSE_DRAIN_SECONDS": "20"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": SECRET, "namespace": "pulse"},
         "stringData": {"GATEWAY_NATS_URL": "nats://pulse-gateway:secret@nats.nats:4222"}},
        gateway_deployment(),
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "pulse-gateway", "namespace": "pulse"},
         "spec": {"selector": dict(LABELS),
                  "ports": [{"name": "ws", "port": 80, "targetPort": "ws"}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
         "metadata": {"name": "pulse", "namespace": "pulse"},
         "spec": {"rules": [{"http": {"paths": [
             {"path": "/api/v2/ws", "pathType": "Exact",
              "backend": {"service": {"name": "pulse-gateway", "port": {"name": "ws"}}}}]}}]}},
    ] + network_policies()


def of_kind(docs, kind, name=None):
    return next(d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"]))


def build(docs=None, ctx=None, name="example"):
    """(ctx, Build) of these documents (default: gateway_docs())."""
    ctx = ctx or context()
    b = Build(ctx, name, copy.deepcopy(docs) if docs is not None else gateway_docs())
    ctx.builds[name] = b
    return ctx, b


def checked(check, docs=None):
    """The Context after CHECK ran on a build of these documents (default: gateway_docs())."""
    ctx, b = build(docs)
    check(b)
    return ctx


def container(docs):
    return of_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


class CheckTest(unittest.TestCase):
    def assertOnlyError(self, ctx, text):
        """The check reported exactly one error, and it says TEXT."""
        self.assertEqual(len(ctx.report.errors), 1, ctx.report.errors)
        self.assertIn(text, ctx.report.errors[0])
