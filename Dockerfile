# Distroless image of the heliosproxy `all` profile: built with Bun (from npm) on Debian, run from gcr.io/distroless/cc-debian12.

FROM node:20-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits reuse the cached layer. Bun itself comes from npm.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
RUN npm run build && ./dist/heliosproxy-all version

FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/dist/heliosproxy-all /heliosproxy-all
# Mount the config at /etc/heliosproxy/proxy.toml; listen_address/admin_address must bind 0.0.0.0 to be reachable.
USER 65532:65532
EXPOSE 6432 9090
ENTRYPOINT ["/heliosproxy-all"]
CMD ["--config", "/etc/heliosproxy/proxy.toml"]
