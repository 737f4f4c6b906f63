#!/usr/bin/env bash
# Builds and tests the browser client in sdk/js with the machine's Node.js
# and npm: installs the locked dev dependencies (npm ci: typescript, vue,
# @types/node), compiles src/ to dist/, runs the unit tests (node:test),
# and fails when the committed dist/ differs from what src/ builds, since
# pearld embeds dist/ and npm users get it without a build.
#   scripts/js.sh          install, build, test, check dist
#   scripts/js.sh build    install and build only (after changing src/)
set -euo pipefail

cd "$(dirname "$0")/../sdk/js"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "js: node and npm are required (Node.js 18 or newer)" >&2
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 18 ]; then
  echo "js: Node.js 18 or newer is required, found $(node --version)" >&2
  exit 1
fi

npm ci --no-audit --no-fund --loglevel=error
if [ "${1:-}" = "build" ]; then
  npm run --silent build
  exit 0
fi
npm test --silent # builds dist/ and the tests first

if command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  if ! git diff --quiet -- dist || [ -n "$(git ls-files --others --exclude-standard -- dist)" ]; then
    echo "js: sdk/js/dist is not what sdk/js/src builds; run scripts/js.sh build and commit dist/" >&2
    git status --short -- dist >&2
    exit 1
  fi
fi
