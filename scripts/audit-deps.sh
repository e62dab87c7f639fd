#!/usr/bin/env bash
# Audit the installed dependencies for known vulnerabilities (pip-audit, PyPI
# advisory service). A vulnerability fails the run. Where the advisory service
# cannot be reached (a closed build network), pip-audit reports every package
# as "could not be audited": say so loudly instead of passing silently.
set -euo pipefail
venv="${VENV:-.venv}"
report="$(mktemp)"
trap 'rm -f "$report"' EXIT
status=0
"$venv/bin/pip-audit" --progress-spinner off --skip-editable "$@" >"$report" 2>&1 || status=$?
total=$("$venv/bin/python" -m pip list --format=freeze 2>/dev/null | wc -l)
unaudited=$(grep -c "could not be audited" "$report" || true)
if [ "$status" -ne 0 ]; then
  cat "$report"
  exit "$status"
fi
if [ "$unaudited" -ge $((total - 2)) ]; then
  echo "pip-audit: WARNING: the advisory service was unreachable; ${unaudited} of ${total} packages were not audited" >&2
else
  head -n 1 "$report"
fi
