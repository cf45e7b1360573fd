#!/usr/bin/env bash
# Builds the real Kubernetes test tools (etcd, the control plane, kubectl, kubelet, kube-proxy) from the
# Go module proxy at pinned versions, and caches them by version so that only
# the first run pays for the build.
#
# k8s.io/kubernetes points its ~30 staging modules at local paths with replace
# directives that do not apply to a module depending on it, so we generate a
# tiny wrapper module that requires it and replaces each staging module with
# its published v0.N.P twin. etcd is built from the version the apiserver
# release itself requires, so the pair is known to work together.
#
# Prints the directory holding the binaries on its last line of stdout.
set -euo pipefail

K8S_VERSION="${FERROLB_K8S_VERSION:-v1.34.4}"
CACHE_ROOT="${FERROLB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/ferrolb}"
BIN_DIR="$CACHE_ROOT/k8s-$K8S_VERSION/bin"
# The control plane and kubectl for every tier; the node components (kubelet,
# kube-proxy) and the controller manager and scheduler for the real-node tier.
TOOLS=(etcd kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy)

have_all() {
  for t in "${TOOLS[@]}"; do [ -x "$BIN_DIR/$t" ] || return 1; done
}

if have_all; then
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || { echo "build-tools: go is not installed" >&2; exit 1; }

staging_version="v0.${K8S_VERSION#v1.}"
work="$CACHE_ROOT/k8s-$K8S_VERSION/module"
mkdir -p "$work" "$BIN_DIR"
cd "$work"

log() { echo "build-tools: $*" >&2; }

log "resolving k8s.io/kubernetes@$K8S_VERSION (staging modules at $staging_version)"
gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
[ -f "$gomod" ] || { log "could not download the go.mod of k8s.io/kubernetes@$K8S_VERSION"; exit 1; }
go_directive=$(sed -n 's/^go \(.*\)$/\1/p' "$gomod" | head -n1)

{
  echo "module ferrolb.io/k8s-test-tools"
  echo
  echo "go $go_directive"
  echo
  echo "require k8s.io/kubernetes $K8S_VERSION"
  echo
  echo "replace ("
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/src/' "$gomod" |
    awk -v v="$staging_version" '{ printf "\t%s => %s %s\n", $1, $1, v }'
  echo ")"
} >go.mod

cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
)
GO

log "go mod tidy (downloads a few hundred modules on the first run)"
# The etcd server module is required by the apiserver release only indirectly;
# pin it explicitly to exactly that version.
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2 }' "$gomod")
GOFLAGS=-mod=mod go get "k8s.io/kubernetes@$K8S_VERSION" "go.etcd.io/etcd/server/v3@$etcd_version" >&2
GOFLAGS=-mod=mod go mod tidy -e >&2 || true

export CGO_ENABLED=0
for pkg in go.etcd.io/etcd/server/v3:etcd k8s.io/kubernetes/cmd/kube-apiserver:kube-apiserver k8s.io/kubernetes/cmd/kubectl:kubectl \
  k8s.io/kubernetes/cmd/kube-controller-manager:kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler:kube-scheduler \
  k8s.io/kubernetes/cmd/kubelet:kubelet k8s.io/kubernetes/cmd/kube-proxy:kube-proxy; do
  path=${pkg%%:*}
  name=${pkg##*:}
  if [ -x "$BIN_DIR/$name" ]; then continue; fi
  log "building $name from $path (several minutes on 2 cores)"
  start=$(date +%s)
  GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" -o "$BIN_DIR/$name.tmp" "$path" >&2
  mv "$BIN_DIR/$name.tmp" "$BIN_DIR/$name"
  log "built $name in $(( $(date +%s) - start ))s"
done

have_all
echo "$BIN_DIR"
