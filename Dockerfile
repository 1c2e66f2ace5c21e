# litellm-sync container image.
#
#   docker build -t litellm-sync:0.1.0 \
#     --build-arg REVISION="$(git rev-parse HEAD)" --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" .
#   docker run --rm -v "$PWD/config.toml:/etc/litellm-sync/config.toml:ro" \
#     -v litellm-sync-state:/var/lib/litellm-sync -p 8080:8080 litellm-sync:0.1.0            # = `run`
#   docker run --rm -v "$PWD/config.toml:/etc/litellm-sync/config.toml:ro" litellm-sync:0.1.0 plan
#
# Layout of the running container (read-only root file system friendly):
#   /usr/local/bin/litellm-sync        the binary (ENTRYPOINT; CMD is `run`, the daemon)
#   /etc/litellm-sync/config.toml      the configuration (LITELLM_SYNC_CONFIG), mounted read-only
#   /var/lib/litellm-sync/             ALL state: the SQLite store (state.db, -wal, -shm). Put a volume here
#   /run/secrets/...                   secrets, read through litellm.api_key_file / sources[].bind_password_file
#   /tmp                               mount a small tmpfs/emptyDir when the root file system is read-only
# Port 8080 serves /metrics, /healthz and /readyz (server.listen). The future SCIM source mounts on the same
# HTTP server and port. No secret is baked into the image.
#
# The crate needs no OpenSSL (rustls with ring) and bundles SQLite (libsqlite3-sys), so the builder needs only
# the C compiler the rust image already has, and the runtime needs only glibc and libgcc (distroless/cc).

# ------------------------------------------------------------------------------------------------- builder
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build

# 1. Dependencies only, in their own layer: the manifest, the lock file and dummy targets. This layer is
#    rebuilt only when Cargo.toml or Cargo.lock change. Every target the manifest names (lib, bin, the
#    integration test, every bench) gets a stub so that cargo accepts the manifest.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/integration benches migrations \
    && echo 'fn main() {}' > src/main.rs \
    && echo '' > src/lib.rs \
    && echo 'fn main() {}' > tests/integration/main.rs \
    && echo 'fn main() {}' > benches/ldap_read.rs \
    && echo 'fn main() {}' > benches/provision.rs \
    && echo 'fn main() {}' > benches/scim.rs \
    && cargo build --release --locked --bin litellm-sync \
    && rm -rf src migrations

# 2. The crate itself. `sqlx::migrate!` embeds migrations/sqlite and migrations/postgres at compile time, so they must be in
#    the build context (see .dockerignore). The touch makes cargo rebuild the crate over the stub even when
#    the copied files keep older modification times.
COPY src ./src
COPY migrations ./migrations
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin litellm-sync \
    && mkdir -p /out/var/lib/litellm-sync /out/etc/litellm-sync \
    && cp target/release/litellm-sync /out/litellm-sync \
    && /out/litellm-sync --version

# ------------------------------------------------------------------------------------------------- runtime
# Debian 12 (glibc 2.36) like the builder; user 65532 "nonroot"; ca-certificates included.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="litellm-sync" \
      org.opencontainers.image.description="Keeps a LiteLLM proxy's users, teams and budgets in step with LDAP / Active Directory" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /out/litellm-sync /usr/local/bin/litellm-sync
# The state directory exists in the image, owned by the runtime user, so that a fresh named volume (which
# Docker seeds from the image) is writable, and so is the directory when no volume is mounted at all.
COPY --from=builder --chown=65532:65532 /out/var/lib/litellm-sync /var/lib/litellm-sync
COPY --from=builder /out/etc/litellm-sync /etc/litellm-sync

ENV LITELLM_SYNC_CONFIG=/etc/litellm-sync/config.toml
# Numeric, so that Kubernetes' runAsNonRoot can verify it without a passwd lookup.
USER 65532:65532
VOLUME ["/var/lib/litellm-sync"]
EXPOSE 8080
# SIGTERM: stop the schedules, finish in-flight operations within server.shutdown_grace, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["litellm-sync"]
CMD ["run"]
