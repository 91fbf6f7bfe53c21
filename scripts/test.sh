#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh Debian machine:
# system packages, node modules, build, type-check, docs, tests.
# Ends with one plain line "tests: N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-system.sh
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
npm run --silent typecheck
docs_log=$(mktemp)
npm run --silent docs 2>&1 | tee "$docs_log"
if grep -qiE '\[(warning|error)\]' "$docs_log" && ! grep -q 'Found 0 errors and 0 warnings' "$docs_log"; then
  echo "typedoc reported warnings or errors: the API docs must build cleanly" >&2
  exit 1
fi

report=$(mktemp -d)/vitest.json
set +e
npx vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
status=$?
set -e
if [ -f "$report" ]; then
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    // A test file that fails to load (syntax error, failing import, error in a hook)
    // counts no failed test but is a failed suite: it must show in the summary.
    const brokenFiles = (r.testResults ?? []).filter((f) => f.status === "failed" && (f.assertionResults ?? []).every((a) => a.status !== "failed")).length;
    const failed = r.numFailedTests + brokenFiles;
    const status = Number(process.argv[2]);
    console.log(`tests: ${r.numPassedTests} passed, ${failed} failed` +
      (brokenFiles ? ` (${brokenFiles} test file(s) failed outside any test)` : "") +
      (r.numPendingTests ? `, ${r.numPendingTests} skipped` : "") +
      (status !== 0 && failed === 0 ? `; vitest exited with status ${status}: errors outside the tests (see "Unhandled Errors" above)` : ""));
    if (r.numTotalTests === 0) { console.error("no test ran"); process.exit(1); }
    if (failed > 0 || r.success === false) process.exit(1);
  ' "$report" "$status" || status=1
else
  echo "tests: no report written (vitest exited with status $status before reporting)" >&2
  [ "$status" -ne 0 ] || status=1
fi
exit $status
