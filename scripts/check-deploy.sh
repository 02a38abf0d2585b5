#!/usr/bin/env bash
# Static checks of the Prometheus files under deploy/ (needs promtool, from Debian's
# `prometheus` package, and jsonnet, from Debian's `jsonnet`). Run from anywhere:
#   scripts/check-deploy.sh
#
# rules.yml, the PrometheusRule and the dashboard are rendered from the mixin in
# deploy/mixin; the first check re-renders them and fails on any difference. Without
# jsonnet it is skipped with a warning, unless HSS_EXPORTER_REQUIRE_JSONNET=1.
set -euo pipefail

cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
    echo "check-deploy: promtool not found (apt-get install prometheus)" >&2
    exit 1
fi

if command -v jsonnet >/dev/null 2>&1; then
    echo "check-deploy: the rendered files are what deploy/mixin renders"
    bash deploy/mixin/render.sh --check
    if command -v jsonnetfmt >/dev/null 2>&1; then
        echo "check-deploy: jsonnetfmt --test deploy/mixin"
        find deploy/mixin -name '*sonnet' -print0 | xargs -0 jsonnetfmt --test
    fi
elif [ "${HSS_EXPORTER_REQUIRE_JSONNET:-}" = 1 ]; then
    echo "check-deploy: jsonnet not found (apt-get install jsonnet), and HSS_EXPORTER_REQUIRE_JSONNET=1" >&2
    exit 1
else
    echo "check-deploy: WARNING: jsonnet not found (apt-get install jsonnet); not checking the rendered files against deploy/mixin" >&2
fi

echo "check-deploy: promtool check config deploy/prometheus/prometheus.yml"
promtool check config deploy/prometheus/prometheus.yml

echo "check-deploy: promtool check rules deploy/prometheus/rules.yml"
promtool check rules deploy/prometheus/rules.yml

echo "check-deploy: promtool test rules deploy/prometheus/rules.test.yml"
promtool test rules deploy/prometheus/rules.test.yml

echo "check-deploy: OK"
