#!/usr/bin/env bash
# Renders the monitoring mixin (deploy/mixin/) into the files it generates:
#
#   deploy/prometheus/rules.yml
#   deploy/kubernetes/prometheusrule.yaml
#   deploy/grafana/dashboards/hss-exporter.json
#
# Usage (from anywhere; needs jsonnet, Debian's package `jsonnet`):
#   deploy/mixin/render.sh                      write the files in this repository
#   deploy/mixin/render.sh --out DIR            write them under DIR instead (same relative paths)
#   deploy/mixin/render.sh --check              fail if the committed files differ from a fresh render
#   deploy/mixin/render.sh --overrides FILE     add FILE (jsonnet, e.g. { _config+:: { ... } }) to the mixin
set -euo pipefail

mixin="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$mixin/../.." && pwd)"
out="$repo"
check=0
overrides=()

while [ $# -gt 0 ]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --check) check=1; shift ;;
        --overrides) overrides=(--tla-code-file "overrides=$(realpath "$2")"); shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "render: unknown argument $1" >&2; exit 2 ;;
    esac
done

if ! command -v jsonnet >/dev/null 2>&1; then
    echo "render: jsonnet not found (apt-get install jsonnet)" >&2
    exit 1
fi

# file rendered by render.jsonnet -> its place in the repository
declare -A place=(
    [rules.yml]=deploy/prometheus/rules.yml
    [prometheusrule.yaml]=deploy/kubernetes/prometheusrule.yaml
    [hss-exporter.json]=deploy/grafana/dashboards/hss-exporter.json
)

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
jsonnet -J "$mixin" -S -m "$tmp" "${overrides[@]}" "$mixin/render.jsonnet" >/dev/null
jsonnet -J "$mixin" -m "$tmp" --tla-str files=json "${overrides[@]}" "$mixin/render.jsonnet" >/dev/null

if [ "$check" = 1 ]; then
    status=0
    for name in "${!place[@]}"; do
        if ! diff -u "$repo/${place[$name]}" "$tmp/$name"; then
            echo "render: ${place[$name]} differs from what deploy/mixin renders" >&2
            status=1
        fi
    done
    if [ "$status" != 0 ]; then
        echo "render: run deploy/mixin/render.sh and commit the result" >&2
        exit 1
    fi
    echo "render: ${place[*]} match the mixin"
    exit 0
fi

for name in "${!place[@]}"; do
    mkdir -p "$(dirname "$out/${place[$name]}")"
    cp "$tmp/$name" "$out/${place[$name]}"
    echo "render: wrote $out/${place[$name]}"
done
