#!/usr/bin/env bash
# Regenerates go.mod's replace block for another Kubernetes patch release:
#   tools/controlplane/k8s/gen-gomod.sh v1.34.4
# Every staging module kubernetes replaces with ./staging/src/... is pointed at its published
# v0.<minor>.<patch> instead, which is what makes the module buildable outside its own tree.
set -euo pipefail
v=${1:?usage: gen-gomod.sh vX.Y.Z}
cd "$(dirname "$0")"
mod=$(go mod download -json "k8s.io/kubernetes@$v" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
staging="v0.${v#v1.}"
{
  sed -n '1,/^go /p' go.mod
  echo
  echo "require k8s.io/kubernetes $v"
  echo
  echo "replace ("
  grep "=> ./staging" "$mod" | awk -v s="$staging" '{print "\t"$1" => "$1" "s}'
  echo ")"
  echo
  echo "tool ("
  echo "	k8s.io/kubernetes/cmd/kube-apiserver"
  echo "	k8s.io/kubernetes/cmd/kube-controller-manager"
  echo "	k8s.io/kubernetes/cmd/kubectl"
  echo ")"
} > go.mod.new
mv go.mod.new go.mod
go mod tidy
