#!/usr/bin/env bash
# Builds the helm CLI from the Go module proxy at a pinned version and caches
# it by version, the same way build-tools.sh caches etcd and kube-apiserver.
# helm.sh/helm/v3 is an ordinary Go module (no staging replaces), so
# `go install module/cmd/helm@version` with GOBIN pointing at the cache works.
#
# Prints the directory holding the binary on its last line of stdout.
set -euo pipefail

HELM_VERSION="${FERROLB_HELM_VERSION:-v3.19.5}"
CACHE_ROOT="${FERROLB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb}"
BIN_DIR="$CACHE_ROOT/helm-$HELM_VERSION/bin"

if [ -x "$BIN_DIR/helm" ]; then
  echo "$BIN_DIR"
  exit 0
fi

log() { echo "build-helm: $*" >&2; }

command -v go >/dev/null || { log "go is not installed"; exit 1; }
mkdir -p "$BIN_DIR"

log "building helm $HELM_VERSION from helm.sh/helm/v3/cmd/helm (a few minutes on 2 cores)"
start=$(date +%s)
# Install into a private directory first and move into place, so an
# interrupted build never leaves a half-written binary at the cached path.
tmp=$(mktemp -d "$CACHE_ROOT/helm-$HELM_VERSION/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS=-mod=mod go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
mv "$tmp/helm" "$BIN_DIR/helm"
log "built helm in $(( $(date +%s) - start ))s"

echo "$BIN_DIR"
