#!/usr/bin/env bash
# Regenerates the staging-module `replace` lines of go.mod from the go.mod of
# the k8s.io/kubernetes version this module requires.
#
# k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/apiserver,
# ...) at v0.0.0 and replaces them with ./staging/src/<module> in its own
# go.mod. Outside that repository each one must be replaced by the published
# module at the matching v0.X.Y (v1.36.3 -> v0.36.3). This script reads the list
# from that go.mod, so a new Kubernetes version brings its new staging modules.
#
# Usage: ./gen-replaces.sh [vX.Y.Z]   (default: the version go.mod requires)
# Then commit go.mod and go.sum.
set -euo pipefail
cd "$(dirname "$0")"

current=$(go mod edit -print | sed 's/^require[[:space:]]*//' | awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ && !found { print $2; found = 1 }')
version=${1:-$current}
if [[ ! $version =~ ^v1\.([0-9]+)\.([0-9]+)$ ]]; then
    echo "gen-replaces: k8s.io/kubernetes version '$version' is not of the form v1.X.Y" >&2
    exit 1
fi
staging="v0.${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"

upstream=$(go mod download -json "k8s.io/kubernetes@$version" | awk -F'"' '$2 == "GoMod" { print $4 }')
if [[ ! -f $upstream ]]; then
    echo "gen-replaces: could not download the go.mod of k8s.io/kubernetes@$version" >&2
    exit 1
fi

# Replace lines look like `k8s.io/api => ./staging/src/k8s.io/api`, inside a
# `replace (...)` block or after a single `replace`.
mapfile -t modules < <(sed 's/^replace[[:space:]]*//' "$upstream" \
    | awk '$2 == "=>" && $3 ~ /^\.\/staging\/src\// { print $1 }' | sort -u)
if (( ${#modules[@]} == 0 )); then
    echo "gen-replaces: no staging replace lines found in $upstream" >&2
    exit 1
fi
others=$(sed 's/^replace[[:space:]]*//' "$upstream" \
    | awk '$2 == "=>" && $3 !~ /^\.\/staging\/src\// { print }')
if [[ -n $others ]]; then
    echo "gen-replaces: k8s.io/kubernetes@$version has replace lines this script does not handle:" >&2
    echo "$others" >&2
    exit 1
fi

# Drop every replace we have, then add one per staging module.
args=()
while read -r old; do
    [[ -n $old ]] && args+=("-dropreplace=$old")
done < <(go mod edit -print | sed 's/^replace[[:space:]]*//' | awk '$2 == "=>" { print $1 }')
args+=("-require=k8s.io/kubernetes@$version")
for m in "${modules[@]}"; do
    args+=("-replace=$m=$m@$staging")
done
go mod edit "${args[@]}"
go mod tidy
echo "gen-replaces: k8s.io/kubernetes $version, ${#modules[@]} staging modules at $staging" >&2
