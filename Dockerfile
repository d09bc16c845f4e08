# Distroless image of one heliosproxy profile: `docker build --build-arg PROFILE=default|ha|all -t heliosproxy .`
# Base images are named by tag below and are NOT pinned by digest yet: the machines this project is built and tested on
# reach no container registry, so no digest could be read and checked. Pin them with scripts/pin-image-digests.sh
# (crane, skopeo or docker buildx, with registry access) before a release build; every FROM names one of these two ARGs.

# Build stage: Node.js 26 (the Active LTS line) on Debian 12, the same glibc as the runtime image. Bun itself comes from npm.
ARG BUILD_IMAGE=node:26-bookworm-slim
# Runtime: distroless with glibc and libstdc++ only (no shell, no package manager), as uid/gid 65532.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILD_IMAGE} AS build
# Which feature profile to compile (scripts/build.ts PROFILES); only that one is built.
ARG PROFILE=all
WORKDIR /src
# Dependencies first, so source edits reuse the cached layer.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN node_modules/.bin/bun scripts/build.ts --no-archive "${PROFILE}" \
 && ./dist/heliosproxy-"${PROFILE}" version \
 && cp ./dist/heliosproxy-"${PROFILE}" /heliosproxy

FROM ${RUNTIME_IMAGE}
ARG PROFILE=all
LABEL org.opencontainers.image.title="heliosproxy" \
      org.opencontainers.image.description="PostgreSQL wire-protocol proxy and pooler (profile ${PROFILE})"
COPY --from=build /heliosproxy /usr/local/bin/heliosproxy
# Mount the config here (listen_address/admin_address must bind 0.0.0.0 to be reachable); `health` reads it too.
ENV HELIOSPROXY_CONFIG=/etc/heliosproxy/proxy.toml
# Non-root, and nothing is written to the filesystem: runs with a read-only root.
USER 65532:65532
EXPOSE 6432 9090
# No curl in distroless: the binary asks its own /readyz.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 CMD ["/usr/local/bin/heliosproxy", "health", "--timeout", "4"]
# The proxy is PID 1 itself: it handles SIGTERM/SIGINT (drain, then exit 0) and SIGHUP (reload).
ENTRYPOINT ["/usr/local/bin/heliosproxy"]
CMD ["run"]
