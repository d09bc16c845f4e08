#!/usr/bin/env bash
# Pins the Dockerfile's base images (ARG BUILD_IMAGE / RUNTIME_IMAGE, which every FROM names) to the digests their tags point at now: run before a release build, review the diff, commit.
# Usage: scripts/pin-image-digests.sh [DOCKERFILE]   (default: the project's Dockerfile)
# Needs one of: crane, skopeo, or docker with buildx (`docker buildx imagetools inspect`), and network access to the registries.
# Resolves every image before it writes, so a failure leaves the Dockerfile as it was.
set -euo pipefail

dockerfile="${1:-$(dirname "$0")/../Dockerfile}"

digest_of() {
  local ref="$1"
  if command -v crane >/dev/null 2>&1; then
    crane digest "$ref"
  elif command -v skopeo >/dev/null 2>&1; then
    skopeo inspect --format '{{.Digest}}' "docker://$ref"
  elif command -v docker >/dev/null 2>&1 && docker buildx version >/dev/null 2>&1; then
    docker buildx imagetools inspect --format '{{json .Manifest.Digest}}' "$ref" | tr -d '"'
  else
    echo "pin-image-digests: need crane, skopeo or docker buildx" >&2
    return 1
  fi
}

declare -A pinned
for arg in BUILD_IMAGE RUNTIME_IMAGE; do
  current="$(sed -n "s/^ARG ${arg}=//p" "$dockerfile")"
  if [ -z "$current" ]; then
    echo "pin-image-digests: no \"ARG ${arg}=\" line in $dockerfile" >&2
    exit 1
  fi
  tag="${current%%@*}"
  digest="$(digest_of "$tag")" || { echo "pin-image-digests: cannot resolve $tag" >&2; exit 1; }
  if ! [[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]]; then
    echo "pin-image-digests: no digest for $tag (got \"$digest\")" >&2
    exit 1
  fi
  pinned[$arg]="${tag}@${digest}"
done

for arg in BUILD_IMAGE RUNTIME_IMAGE; do
  sed -i "s|^ARG ${arg}=.*|ARG ${arg}=${pinned[$arg]}|" "$dockerfile"
  echo "${arg}=${pinned[$arg]}"
done
