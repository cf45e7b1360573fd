#!/usr/bin/env bash
# Builds MetalLB's binaries (controller, speaker) from the Go module proxy at a
# pinned version and caches them by version, like build-tools.sh and
# build-helm.sh, so only the first run pays.
#
# Usage: build-metallb.sh controller [speaker]
# Prints the directory holding the binaries on its last line of stdout.
#
# go.universe.tf/metallb v0.16.2 requires github.com/metallb/frr-k8s v0.0.27,
# which the Go module proxy does not serve; the newest it serves is v0.0.21.
# Replacing v0.0.27 by v0.0.21 does not compile: MetalLB's frr-k8s BGP mode
# (internal/bgp/frrk8s) uses Advertise.PrefixesWithAsPathPrepend and the type
# AsPathPrependPrefixes, which v0.0.21 lacks. So we replace frr-k8s with the
# smallest local shim that compiles: v0.0.21's go.mod and its api/v1beta1
# package (the only package MetalLB imports), plus that one field and type.
# The controller and the native-mode speaker never run the frr-k8s code.
set -euo pipefail

METALLB_VERSION="${FERROLB_METALLB_VERSION:-v0.16.2}"
FRR_K8S_VERSION="${FERROLB_FRR_K8S_VERSION:-v0.0.21}"
CACHE_ROOT="${FERROLB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb}"
ROOT="$CACHE_ROOT/metallb-$METALLB_VERSION"
BIN_DIR="$ROOT/bin"

log() { echo "build-metallb: $*" >&2; }

[ $# -gt 0 ] || { log "usage: $0 controller [speaker]"; exit 2; }
for name in "$@"; do
  case "$name" in
    controller | speaker) ;;
    *) log "unknown binary $name (controller or speaker)"; exit 2 ;;
  esac
done

missing=()
for name in "$@"; do [ -x "$BIN_DIR/$name" ] || missing+=("$name"); done
if [ ${#missing[@]} -eq 0 ]; then
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || { log "go is not installed"; exit 1; }
mkdir -p "$ROOT" "$BIN_DIR"
# Builds of several test binaries may race for the same cache: one builds, the
# others wait for it and then find the binaries there.
exec 9>"$ROOT/lock"
flock 9

work="$ROOT/module"
shim="$ROOT/frr-k8s-shim"
rm -rf "$work" "$shim"
mkdir -p "$work" "$shim/api"

log "shimming github.com/metallb/frr-k8s from $FRR_K8S_VERSION"
frr_dir=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "github.com/metallb/frr-k8s@$FRR_K8S_VERSION" |
  sed -n 's/.*"Dir": "\(.*\)",/\1/p')
[ -d "$frr_dir/api/v1beta1" ] || { log "could not download frr-k8s@$FRR_K8S_VERSION"; exit 1; }
cp "$frr_dir/go.mod" "$shim/go.mod"
cp -r "$frr_dir/api/v1beta1" "$shim/api/v1beta1"
chmod -R u+w "$shim"
types="$shim/api/v1beta1/frrconfiguration_types.go"
grep -q 'PrefixesWithCommunity \[\]CommunityPrefixes' "$types" ||
  { log "frr-k8s@$FRR_K8S_VERSION: Advertise has no PrefixesWithCommunity to patch after"; exit 1; }
sed -i 's|^\(\s*\)PrefixesWithCommunity \[\]CommunityPrefixes `json:"withCommunity,omitempty"`|&\n\1PrefixesWithAsPathPrepend []AsPathPrependPrefixes `json:"withAsPathPrepend,omitempty"`|' "$types"
cat >"$shim/api/v1beta1/zz_ferrolb_shim.go" <<'GO'
package v1beta1

// AsPathPrependPrefixes is a list of prefixes advertised with an AS path
// prepended (frr-k8s v0.0.27, which the module proxy does not serve).
type AsPathPrependPrefixes struct {
	Prefixes      []string `json:"prefixes,omitempty"`
	AsPathPrepend uint8    `json:"asPathPrepend,omitempty"`
}
GO

cd "$work"
cat >go.mod <<GO
module ferrolb.io/metallb-build

go 1.26.0

require go.universe.tf/metallb $METALLB_VERSION

replace github.com/metallb/frr-k8s => ../frr-k8s-shim
GO
cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.universe.tf/metallb/controller"
	_ "go.universe.tf/metallb/speaker"
)
GO
log "go mod tidy (downloads MetalLB's dependencies on the first run)"
GOFLAGS=-mod=mod go mod tidy >&2

export CGO_ENABLED=0
for name in "${missing[@]}"; do
  [ -x "$BIN_DIR/$name" ] && continue
  log "building MetalLB $name $METALLB_VERSION (a few minutes on 2 cores)"
  start=$(date +%s)
  GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/$name.tmp" "go.universe.tf/metallb/$name" >&2
  mv "$BIN_DIR/$name.tmp" "$BIN_DIR/$name"
  log "built $name in $(( $(date +%s) - start ))s"
done

echo "$BIN_DIR"
