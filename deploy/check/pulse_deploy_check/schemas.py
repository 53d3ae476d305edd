"""Validation against the Kubernetes JSON schemas (reported under `kustomize`).

Strict: an unknown field (a typo such as `startupProbes`) is an error, not silently dropped
by the API server. Checked against the oldest Kubernetes we support and the newest the
schemas know; the CRDs (HTTPRoute, ExternalSecret) have no schema there and are checked by
hand in routes and apply.
"""

# Kubernetes versions the manifests are validated against: the oldest supported and the newest
# the schemas know.
K8S_VERSIONS = ("1.30.0", None)
# Kinds without a schema in kubernetes-validate, checked by hand.
CRD_KINDS = {"HTTPRoute", "ExternalSecret"}


class SchemaCounts:
    def __init__(self):
        self.validated = 0
        self.by_hand = 0
        self.kinds = set()


def validate_schemas(ctx, counts, where, docs):
    if ctx.quick:
        return
    import kubernetes_validate as kv
    for d in docs:
        what = f"{where}: {d.get('kind')} {d.get('metadata', {}).get('name')}"
        if d.get("kind") in CRD_KINDS:
            counts.by_hand += 1
            continue
        for version in K8S_VERSIONS:
            version = version or kv.latest_version()
            try:
                kv.validate(d, version, strict=True)
            except kv.SchemaNotFoundError:
                ctx.fail("kustomize", f"{what}: no schema for {d.get('apiVersion')} in "
                                      f"Kubernetes {version}, and no check by hand")
                break
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                ctx.fail("kustomize", f"{what}: invalid for Kubernetes {version} at {path}: "
                                      f"{e.message}")
                break
        else:
            counts.validated += 1
            counts.kinds.add(d.get("kind"))
