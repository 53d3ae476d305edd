"""The NATS Helm values (check `nats`): users and permissions exactly as the README documents.

deploy/k8s/nats/README.md holds the `hcl` block operators read; values.yaml is what is
deployed. Each user's publish/subscribe allow lists must match, passwords must come from the
server's environment, each service's NATS_URL must log in as its own user, and (when the
binary is installed) `nats-server -t` must accept the accounts the chart writes.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from urllib.parse import urlsplit

from .builds import all_containers
from .images import service_of_image

NATS_README = "deploy/k8s/nats/README.md"
NATS_VALUES = "deploy/k8s/nats/values.yaml"


def hcl_users(text):
    """{user: (password reference, publish allow, subscribe allow)} from the README's hcl block."""
    m = re.search(r"```hcl\n(.*?)```", text, re.S)
    if not m:
        return None
    users = {}
    for block in re.split(r"\n\s*\{\s*\n\s*user:", m.group(1))[1:]:
        name = re.match(r"\s*([\w-]+)", block).group(1)
        pw = re.search(r"password:\s*(\$\w+)", block)
        pub = re.search(r"publish:\s*\{\s*allow:\s*\[(.*?)\]", block, re.S)
        sub = re.search(r"subscribe:\s*\{\s*allow:\s*\[(.*?)\]", block, re.S)
        users[name] = (pw.group(1) if pw else None,
                       sorted(re.findall(r'"([^"]+)"', pub.group(1))) if pub else [],
                       sorted(re.findall(r'"([^"]+)"', sub.group(1))) if sub else [])
    return users


def values_users(ctx, acct, env):
    """{user: (password reference, publish allow, subscribe allow)} from the values' account."""
    got = {}
    for u in acct.get("users") or []:
        perms = u.get("permissions") or {}
        pw = re.fullmatch(r"<<\s*(\$\w+)\s*>>", str(u.get("password", "")))
        got[u.get("user")] = (pw.group(1) if pw else None,
                              sorted((perms.get("publish") or {}).get("allow") or []),
                              sorted((perms.get("subscribe") or {}).get("allow") or []))
        if not pw:
            ctx.fail("nats", f"{NATS_VALUES}: user {u.get('user')}'s password is not a << $VAR >> "
                             f"reference to the server's environment")
        elif pw.group(1)[1:] not in env:
            ctx.fail("nats", f"{NATS_VALUES}: user {u.get('user')}'s password {pw.group(1)} is "
                             f"not set in container.env")
    return got


def compare_users(ctx, hcl, got):
    for user in sorted(set(hcl) | set(got)):
        if user not in got:
            ctx.fail("nats", f"{NATS_VALUES}: no user {user} (in the README's hcl block)")
        elif user not in hcl:
            ctx.fail("nats", f"{NATS_VALUES}: user {user} is not in the README's hcl block")
        elif got[user] != hcl[user]:
            for i, what in ((0, "password"), (1, "publish allow"), (2, "subscribe allow")):
                if got[user][i] != hcl[user][i]:
                    a, b_ = got[user][i], hcl[user][i]
                    diff = (f"only in values: {sorted(set(a) - set(b_))}, only in the README: "
                            f"{sorted(set(b_) - set(a))}") if isinstance(a, list) else \
                        f"{a} vs {b_}"
                    ctx.fail("nats", f"{NATS_VALUES}: user {user}'s {what} differs from the "
                                     f"README's hcl block ({diff})")


def check_logins(ctx):
    """Each service's NATS_URL names its own user."""
    for name, b in ctx.builds.items():
        for kind, wname, pod, labels, annotations, d in b.workloads:
            for _, c in all_containers(pod):
                svc = service_of_image(c.get("image"))
                ref = b.secret_key_of(c, "NATS_URL")
                if not svc or not ref:
                    continue
                secret = b.kind("Secret").get(ref[0])
                value = ((secret or {}).get("stringData") or {}).get(ref[1])
                if value is None and secret and ref[1] in (secret.get("data") or {}):
                    value = base64.b64decode(secret["data"][ref[1]]).decode()
                if value is not None and urlsplit(value).username != f"pulse-{svc}":
                    ctx.fail("nats", f"overlay {name}: {kind} {wname}'s NATS_URL ({ref[1]}) does "
                                     f"not log in as pulse-{svc}")


def run_nats_server(ctx, nats_server, accounts, values):
    """The configuration the chart writes from config.merge (JSON, with `<< $VAR >>` unquoted),
    tested by the real server with passwords in its environment, as the chart's pod has them.
    Returns a note for the summary, "" when it fails."""
    conf = json.dumps({"accounts": accounts}, indent=2)
    conf = re.sub(r'"<<\s+(.*?)\s+>>"', r"\1", conf)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "nats.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(conf)
        env = dict(os.environ)
        for var in (((values.get("container") or {}).get("env")) or {}):
            env[var] = "p0123456789abcdef"
        run = subprocess.run([nats_server, "-t", "-c", path], env=env, capture_output=True,
                             text=True, timeout=30)
        if run.returncode != 0:
            ctx.fail("nats", f"{NATS_VALUES}: nats-server rejects the accounts: "
                             f"{(run.stderr or run.stdout).strip()}")
            return ""
        return "nats-server -t accepts them"


def find_nats_server():
    return shutil.which("nats-server") or ("/usr/sbin/nats-server"
                                           if os.path.exists("/usr/sbin/nats-server") else None)


def check_nats(ctx, readme_text, nats_server=None):
    """readme_text: deploy/k8s/nats/README.md, None when missing; the values from ctx."""
    before = ctx.report.mark()
    hcl = hcl_users(readme_text) if readme_text is not None else None
    values = ctx.first_doc(NATS_VALUES)
    accounts = (((values.get("config") or {}).get("merge") or {}).get("accounts")) or {}
    if not hcl:
        ctx.fail("nats", f"{NATS_README} has no ```hcl block with users")
    elif "PULSE" not in accounts:
        ctx.fail("nats", f"{NATS_VALUES}: no account PULSE under config.merge.accounts")
    else:
        acct = accounts["PULSE"]
        if str(acct.get("jetstream")) not in ("enabled", "True", "true"):
            ctx.fail("nats", f"{NATS_VALUES}: JetStream is not enabled for account PULSE")
        env = ((values.get("container") or {}).get("env")) or {}
        compare_users(ctx, hcl, values_users(ctx, acct, env))
        check_logins(ctx)
    note = ""
    if accounts and nats_server and not ctx.quick:
        note = run_nats_server(ctx, nats_server, accounts, values)
    if ctx.report.clean_since(before):
        ctx.say("nats", f"ok (users {', '.join(sorted(hcl or {}))} in {NATS_VALUES} with exactly "
                        f"the README's permissions, passwords from the server's environment"
                        f"{'; ' + note if note else ''})")
