#!/usr/bin/env bash
# Validate and unit-test the Prometheus rules in alerts/.
#
#   alerts/check.sh          (from anywhere; it works from the repo root)
#
# Runs, in order, and stops with a non-zero exit at the first failure:
#   1. promtool check rules alerts/*.rules.yml      (syntax, PromQL, templates)
#   2. promtool test rules alerts/tests/*.test.yml  (unit tests)
#   3. every alert has a unit test, and every runbook_url anchor has a
#      matching heading in docs/runbook.md
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v promtool >/dev/null 2>&1; then
    echo "check.sh: promtool not found on PATH (Debian package: prometheus)" >&2
    exit 127
fi

run() {
    echo "+ $*"
    "$@"
}

shopt -s nullglob
rule_files=(alerts/*.rules.yml)
test_files=(alerts/tests/*.test.yml)
if (( ${#rule_files[@]} == 0 || ${#test_files[@]} == 0 )); then
    echo "check.sh: no rule files or no test files found" >&2
    exit 1
fi

run promtool check rules "${rule_files[@]}"
run promtool test rules "${test_files[@]}"

echo "+ cross-check alerts against tests and docs/runbook.md"
status=0
alerts=$(sed -n 's/^[[:space:]]*- alert:[[:space:]]*\([A-Za-z0-9_]*\).*/\1/p' "${rule_files[@]}")
for alert in $alerts; do
    if ! grep -Eq "alertname:[[:space:]]*${alert}[[:space:]]*$" "${test_files[@]}"; then
        echo "  missing unit test for alert ${alert}" >&2
        status=1
    fi
done
anchors=$(grep -Eho 'runbook_url:.*docs/runbook\.md#[a-z0-9-]+' "${rule_files[@]}" | sed 's/.*#//' | sort -u)
for anchor in $anchors; do
    # GitHub anchor of "## Heading": lower-cased, spaces to dashes.
    if ! grep -Ei '^#+[[:space:]]' docs/runbook.md | sed -E 's/^#+[[:space:]]+//' \
            | tr '[:upper:] ' '[:lower:]-' | grep -qx "${anchor}"; then
        echo "  runbook_url anchor #${anchor} has no heading in docs/runbook.md" >&2
        status=1
    fi
done
if (( status != 0 )); then
    echo "check.sh: FAILED" >&2
    exit "$status"
fi
echo "check.sh: OK ($(wc -w <<<"$alerts") alerts, ${#test_files[@]} test files)"
