#!/usr/bin/env bash
# Builds the real Kubernetes control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl) and the helm CLI from the Go
# module proxy, and caches the binaries outside the repository:
#   ${KUBESOAR_CACHE:-~/.cache/kubesoar}/bin/<tool>-<version>
# A binary already in the cache is not rebuilt. Nothing here is ever committed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${KUBESOAR_CACHE:-$HOME/.cache/kubesoar}
bin=$cache/bin
work=$cache/build
mkdir -p "$bin" "$work"

# Two cores on this machine: more parallel compile jobs only thrash memory.
export GOFLAGS="${GOFLAGS:-} -buildvcs=false -p=2"
export CGO_ENABLED=0

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

have() { [ -x "$bin/$1-$2" ]; }

build_kubernetes() {
  local v=$KUBERNETES_VERSION minor
  local tools=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local missing=()
  for t in "${tools[@]}"; do have "$t" "$v" || missing+=("$t"); done
  [ ${#missing[@]} -eq 0 ] && { log "kubernetes $v cached"; return; }

  # k8s.io/kubernetes is not meant to be a dependency: its go.mod replaces every
  # k8s.io/* staging module with a local folder. A wrapper module replaces each
  # of them with its published v0.x.y release instead.
  local mod=$work/kubernetes-$v
  mkdir -p "$mod"
  minor=${v#v1.}
  ( cd "$mod"
    [ -f go.mod ] || go mod init kubesoar.dev/localcluster/kubernetes >/dev/null 2>&1
    go mod download -json "k8s.io/kubernetes@$v" >/dev/null
    local gomod
    gomod=$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$v.mod
    go mod edit -go="$(awk '/^go /{print $2}' "$gomod")"
    go mod edit -require="k8s.io/kubernetes@$v"
    for m in $(awk '/=> .\/staging\/src\//{print $1}' "$gomod"); do
      go mod edit -replace="$m=$m@v0.$minor"
    done
    cat > tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    log "resolving kubernetes $v dependencies"
    go mod tidy -e >/dev/null 2>&1 || true
    go get "k8s.io/kubernetes@$v" 2>&1 | tail -3 || true
    local ld="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor%%.*} -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$v -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${minor%%.*}"
    for t in "${missing[@]}"; do
      log "building $t $v"
      go build -tags tools -trimpath -ldflags "$ld" -o "$bin/$t-$v.tmp" "k8s.io/kubernetes/cmd/$t"
      mv "$bin/$t-$v.tmp" "$bin/$t-$v"
    done )
}

build_etcd() {
  local v=$ETCD_VERSION
  have etcd "$v" && { log "etcd $v cached"; return; }
  local mod=$work/etcd-$v
  mkdir -p "$mod"
  ( cd "$mod"
    [ -f go.mod ] || go mod init kubesoar.dev/localcluster/etcd >/dev/null 2>&1
    cat > main.go <<'GO'
// Command etcd is the etcd server, built from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    go get "go.etcd.io/etcd/server/v3@$v" 2>&1 | tail -3
    go mod tidy
    log "building etcd $v"
    go build -trimpath -ldflags "-s -w" -o "$bin/etcd-$v.tmp" .
    mv "$bin/etcd-$v.tmp" "$bin/etcd-$v" )
}

# helm's offline default Kubernetes version (what `helm template` checks a chart's
# kubeVersion against without --kube-version) is set at link time by helm's own
# Makefile from the client-go it builds with; without those flags it is v1.20.0.
helm_kube_flags() {
  local v=$1 gomod minor
  gomod=$(go mod download -json "helm.sh/helm/v3@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  minor=$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$gomod")
  [ -n "$minor" ] || { log "no k8s.io/client-go in $gomod"; return 1; }
  local p
  for p in pkg/chartutil pkg/lint/rules; do
    printf ' -X helm.sh/helm/v3/%s.k8sVersionMajor=1 -X helm.sh/helm/v3/%s.k8sVersionMinor=%s' \
      "$p" "$p" "$minor"
  done
}

# A helm cached before those flags were set (offline default v1.20.0) is rebuilt
# once. -trimpath keeps -ldflags out of the build info, so ask helm itself.
helm_has_kube_flags() {
  local probe=$work/helm-kube-default-probe
  mkdir -p "$probe/templates"
  printf 'apiVersion: v2\nname: probe\nversion: 0.0.0\n' >"$probe/Chart.yaml"
  printf 'kube: {{ .Capabilities.KubeVersion.Version }}\n' >"$probe/templates/kube.txt"
  local out
  out=$("$bin/helm-$1" template probe "$probe" 2>/dev/null) || return 1
  [[ $out == *"kube: v1."* && $out != *"kube: v1.20."* ]]
}

build_helm() {
  local v=$HELM_VERSION
  have helm "$v" && helm_has_kube_flags "$v" && { log "helm $v cached"; return; }
  log "building helm $v"
  local gobin=$work/helm-$v kube_flags
  kube_flags=$(helm_kube_flags "$v")
  mkdir -p "$gobin"
  GOBIN=$gobin go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$v$kube_flags" \
    "helm.sh/helm/v3/cmd/helm@$v"
  mv "$gobin/helm" "$bin/helm-$v"
}

# actionlint lints .github/workflows (tests/packaging/test_image_workflow.py); not
# part of the default set, the cluster does not need it.
build_actionlint() {
  local v=$ACTIONLINT_VERSION
  have actionlint "$v" && { log "actionlint $v cached"; return; }
  log "building actionlint $v"
  local gobin=$work/actionlint-$v
  mkdir -p "$gobin"
  GOBIN=$gobin go install -trimpath -ldflags "-s -w" \
    "github.com/rhysd/actionlint/cmd/actionlint@$v"
  mv "$gobin/actionlint" "$bin/actionlint-$v"
}

want=${*:-etcd kubernetes helm}
for w in $want; do "build_$w"; done
log "binaries in $bin"
