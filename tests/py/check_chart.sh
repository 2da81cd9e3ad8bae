#!/usr/bin/env bash
# Hand check of charts/app with the test venv, the same steps the Rust tests take:
# render + lint each fixture in tests/fixtures/values/, validate the output
# strictly, yamllint the values, and make sure an unknown cloud fails the render.
#
#   tests/py/check_chart.sh        (after scripts/test has built .venv/)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
bin="${STRATA_TEST_VENV_BIN:-$root/.venv/bin}"
export STRATA_TEST_VENV_BIN="$bin"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for values in tests/fixtures/values/*.yaml; do
  name="$(basename "$values" .yaml)"
  "$bin/python" tests/py/helm_render.py charts/app "$values" lakehouse "$work/$name.yaml"
  tests/py/k8s_validate.sh "$work/$name.yaml"
  echo "ok: $values renders, lints and validates"
done

"$bin/yamllint" --strict tests/fixtures/values charts/app/values.yaml charts/app/Chart.yaml
echo "ok: yamllint"

sed 's/^\(  cloudProvider:\).*/\1 azure/' tests/fixtures/values/aws.yaml >"$work/azure.yaml"
if "$bin/python" tests/py/helm_render.py charts/app "$work/azure.yaml" lakehouse "$work/azure.out" \
  2>"$work/azure.err"; then
  echo "FAIL: cloudProvider azure rendered" >&2
  exit 1
fi
grep -q 'global.cloudProvider must be "aws" or "gcp", found "azure"' "$work/azure.err"
echo "ok: cloudProvider azure fails the render: $(grep 'helm render' "$work/azure.err")"
