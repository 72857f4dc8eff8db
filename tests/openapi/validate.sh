#!/usr/bin/env bash
# Prints troupe's OpenAPI document and validates it (validate.mjs).
# Usage: tests/openapi/validate.sh path/to/troupe
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
troupe="$1"
command -v node >/dev/null || { echo "validate.sh: node is missing; run scripts/install" >&2; exit 1; }
if [ ! -d "$here/node_modules/@apidevtools/swagger-parser" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --silent)
fi
doc="$(mktemp)"
trap 'rm -f "$doc"' EXIT
"$troupe" openapi > "$doc"
node "$here/validate.mjs" "$doc"
