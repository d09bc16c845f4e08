#!/usr/bin/env bash
# Pins the Dockerfile's base images (ARG BUILD_IMAGE / RUNTIME_IMAGE) to the digests their tags point at now: run before a release build, review the diff, commit.
# Needs one of: crane, skopeo, or docker with buildx (`docker buildx imagetools inspect`), and network access to the registries.
set -euo pipefail

cd "$(dirname "$0")/.."

digest_of() {
  local ref="$1"
  if command -v crane >/dev/null 2>&1; then
    crane digest "$ref"
  elif command -v skopeo >/dev/null 2>&1; then
    skopeo inspect --format '{{.Digest}}' "docker://$ref"
  elif docker buildx version >/dev/null 2>&1; then
    docker buildx imagetools inspect --format '{{json .Manifest.Digest}}' "$ref" | tr -d '"'
  else
    echo "pin-image-digests: need crane, skopeo or docker buildx" >&2
    exit 1
  fi
}

for arg in BUILD_IMAGE RUNTIME_IMAGE; do
  current="$(sed -n "s/^ARG ${arg}=//p" Dockerfile)"
  tag="${current%%@*}"
  digest="$(digest_of "$tag")"
  case "$digest" in
    sha256:[0-9a-f]*) ;;
    *) echo "pin-image-digests: no digest for $tag (got \"$digest\")" >&2; exit 1 ;;
  esac
  sed -i "s|^ARG ${arg}=.*|ARG ${arg}=${tag}@${digest}|" Dockerfile
  echo "${arg}=${tag}@${digest}"
done
