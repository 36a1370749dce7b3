#!/bin/sh
# The example's test suite: checks what the setup steps produced.
set -eu
test -f build/created.txt || { echo "on-create did not run" >&2; exit 1; }
test -f build/deps.ok || { echo "post-create did not run" >&2; exit 1; }
grep -q "APP_ENV=test" build/app.env
echo "test: ok (3 checks)"
