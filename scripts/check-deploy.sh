#!/usr/bin/env bash
# Static checks of the Prometheus files under deploy/ (needs promtool, from
# Debian's `prometheus` package). Run from the repository root:
#   scripts/check-deploy.sh
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
    echo "check-deploy: promtool not found (apt-get install prometheus)" >&2
    exit 1
fi

echo "check-deploy: promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml

echo "check-deploy: promtool check rules deploy/prometheus/rules.yml"
promtool check rules deploy/prometheus/rules.yml

echo "check-deploy: promtool test rules deploy/prometheus/rules.test.yml"
promtool test rules deploy/prometheus/rules.test.yml

echo "check-deploy: deploy/kubernetes/prometheusrule.yaml is rules.yml under spec:"
expected="$(mktemp)"
trap 'rm -f "$expected"' EXIT
{ sed -n '1,/^spec:$/p' deploy/kubernetes/prometheusrule.yaml; sed 's/^./  &/' deploy/prometheus/rules.yml; } >"$expected"
if ! diff -u deploy/kubernetes/prometheusrule.yaml "$expected"; then
    echo "check-deploy: PrometheusRule drifted from rules.yml; regenerate it (deploy/README.md)" >&2
    exit 1
fi

echo "check-deploy: OK"
