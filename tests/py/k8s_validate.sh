#!/usr/bin/env bash
# Validate Kubernetes manifests (multi-document YAML files) against the OpenAPI
# schemas of one Kubernetes version, rejecting unknown fields (--strict).
#
#   k8s_validate.sh FILE...
#
# Runs, from the test venv (STRATA_TEST_VENV_BIN, else .venv/bin of the repo):
#   kubernetes-validate --strict --quiet --kubernetes-version 1.30.0 FILE...
# Exit 0 when every resource validates, non-zero otherwise. A kind without a
# schema (a typo, or a CRD) is only a warning to kubernetes-validate; here it fails.
# KUBERNETES_VERSION overrides the version (one the installed package ships).
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 FILE..." >&2
  exit 2
fi
for file in "$@"; do
  # kubernetes-validate reports nothing for an empty file; an empty render is a failure.
  if ! grep -q '^kind:' "$file"; then
    echo "ERROR $file holds no Kubernetes resource" >&2
    exit 1
  fi
done

bin="${STRATA_TEST_VENV_BIN:-$(cd "$(dirname "$0")/../.." && pwd)/.venv/bin}"
status=0
output="$("$bin/kubernetes-validate" --strict --quiet \
  --kubernetes-version "${KUBERNETES_VERSION:-1.30.0}" "$@" 2>&1)" || status=$?
if [[ -n "$output" ]]; then
  printf '%s\n' "$output"
fi
if [[ $status -eq 0 ]] && grep -q "Couldn't find schema" <<<"$output"; then
  status=1
fi
exit "$status"
