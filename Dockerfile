# syntax=docker/dockerfile:1
#
# Pulse container images: one file, one target per service.
#
#   docker build --target poller  -t pulse-poller  .
#   docker build --target gateway -t pulse-gateway .
#   docker build --target web     -t pulse-web     .
#   docker build --target simulator -t pulse-simulator .   # demo data only
#
# docker-compose.yml builds all four. The runtime images are distroless (glibc, CA
# certificates, no shell, no package manager), run as uid 10001, carry only the binary (and the
# dashboard for web), and take every setting from the environment variables documented in
# README.md. Container health checks run the binary itself: `pulse-web healthcheck` asks the
# running service's /readyz (`healthcheck live`: /healthz).

# Pinned: the toolchain the workspace is built and tested with, and a Node LTS line.
ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG NODE_IMAGE=node:22-bookworm-slim
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---------------------------------------------------------------------------------------------
# planner: split the context into what the Rust build needs.
#   /recipe  every Cargo.toml and Cargo.lock: the dependency layer below is rebuilt only when
#            one of them changes, not on every source edit;
#   /src     the sources without web/ (built in web-build), so a dashboard change does not
#            recompile the services.
# The builder copies these by content, so its layers stay cached when they are unchanged.
# ---------------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS planner
WORKDIR /src
COPY . .
RUN mkdir -p /recipe \
 && find . \( -name Cargo.toml -o -name Cargo.lock \) -not -path './target/*' -print0 \
    | xargs -0 cp --parents -t /recipe \
 && bash scripts/docker-dep-stubs.sh list . > /recipe/.targets \
 && cp scripts/docker-dep-stubs.sh /recipe/.docker-dep-stubs.sh \
 && rm -rf web

# ---------------------------------------------------------------------------------------------
# builder: compile the service binaries and the simulator (release, locked dependencies).
# ---------------------------------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0

# 1. Dependencies only: every target of every workspace crate, as `cargo metadata` lists it in
#    the planner, gets a placeholder source (scripts/docker-dep-stubs.sh), and the build
#    compiles the whole dependency graph. This layer stays cached until a manifest, Cargo.lock
#    or the target list changes. `make test` replays this step (scripts/check-docker-deps.sh).
COPY --from=planner /recipe/ ./
RUN set -eu; \
    bash .docker-dep-stubs.sh write . .targets; \
    cargo build --release --locked -p pulse-poller -p pulse-gateway -p pulse-web -p pulse-simulator

# 2. The real sources. COPY keeps the files' original modification times, which can be older
#    than the placeholders compiled above; touching them makes cargo rebuild the workspace
#    crates (and only them).
COPY --from=planner /src/ ./
RUN set -eu; \
    find . -name '*.rs' -not -path './target/*' -exec touch {} +; \
    cargo build --release --locked -p pulse-poller -p pulse-gateway -p pulse-web -p pulse-simulator; \
    mkdir -p /out; \
    for bin in pulse-poller pulse-gateway pulse-web pulse-simulator; do \
      install -m 0755 "target/release/$bin" "/out/$bin"; \
    done

# ---------------------------------------------------------------------------------------------
# web-build: the dashboard (web/ -> web/dist).
# ---------------------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS web-build
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
# The dashboard may take types or fixtures from the protocol's JSON Schemas.
COPY proto/ /src/proto/
COPY web/ ./
RUN npm run build && test -f dist/index.html

# ---------------------------------------------------------------------------------------------
# runtime: what every service image shares.
# ---------------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
LABEL org.opencontainers.image.vendor="Pulse" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /srv/pulse
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# ---------------------------------------------------------------------------------------------
# poller: `pulse-poller` (run by default; `migrate` as the command).
# ---------------------------------------------------------------------------------------------
FROM runtime AS poller
LABEL org.opencontainers.image.title="pulse-poller" \
      org.opencontainers.image.description="Reads PostgreSQL and publishes per-tenant snapshots and telemetry to NATS"
COPY --from=builder /out/pulse-poller /usr/local/bin/pulse-poller
# /healthz, /readyz, /metrics (PULSE_POLLER_ADDR)
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/pulse-poller"]
CMD ["run"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s CMD ["/usr/local/bin/pulse-poller", "healthcheck"]

# ---------------------------------------------------------------------------------------------
# gateway: `pulse-gateway`.
# ---------------------------------------------------------------------------------------------
FROM runtime AS gateway
LABEL org.opencontainers.image.title="pulse-gateway" \
      org.opencontainers.image.description="WebSocket fan-out from NATS to browsers"
COPY --from=builder /out/pulse-gateway /usr/local/bin/pulse-gateway
# WebSocket endpoint /api/v2/ws (PULSE_GATEWAY_ADDR); /healthz, /readyz, /metrics on it too, or
# on their own port where PULSE_GATEWAY_OPS_ADDR says so (compose and the manifests: 9081)
EXPOSE 8081 9081
ENTRYPOINT ["/usr/local/bin/pulse-gateway"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s CMD ["/usr/local/bin/pulse-gateway", "healthcheck"]

# ---------------------------------------------------------------------------------------------
# web: `pulse-web` and the built dashboard.
# ---------------------------------------------------------------------------------------------
FROM runtime AS web
LABEL org.opencontainers.image.title="pulse-web" \
      org.opencontainers.image.description="Dashboard, login, WebSocket tickets and the tenant REST API"
COPY --from=builder /out/pulse-web /usr/local/bin/pulse-web
COPY --from=web-build /src/web/dist /srv/pulse/web
ENV PULSE_WEB_ROOT=/srv/pulse/web
# Dashboard and REST API (PULSE_WEB_ADDR); /healthz, /readyz, /metrics (PULSE_WEB_OPS_ADDR)
EXPOSE 8080 9080
ENTRYPOINT ["/usr/local/bin/pulse-web"]
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s CMD ["/usr/local/bin/pulse-web", "healthcheck"]

# ---------------------------------------------------------------------------------------------
# simulator: `pulse-simulator`, demo tenants, users and devices with live data. For demos and
# test clusters only: every demo user shares one password. It serves no ops endpoint, so the
# image has no health check; a crash shows as a restart.
# ---------------------------------------------------------------------------------------------
FROM runtime AS simulator
LABEL org.opencontainers.image.title="pulse-simulator" \
      org.opencontainers.image.description="Demo data: tenants, users and devices with live telemetry and alerts"
COPY --from=builder /out/pulse-simulator /usr/local/bin/pulse-simulator
ENTRYPOINT ["/usr/local/bin/pulse-simulator"]
