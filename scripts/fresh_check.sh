#!/usr/bin/env bash
# The fresh-machine check: clone HEAD into a temporary folder beside a copy of ../shared and run
# the test command there with a minimal environment (nothing on PATH but the system's), as CI and
# a new contributor do. Anything the suite needs that only this machine's PATH or a hand install
# provides fails here. Extra arguments go to pytest.
#   PYTHON=/path/to/python3 scripts/fresh_check.sh   # when the system's python3 is not the one to use
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REV=$(git rev-parse HEAD)  # read once: commits landing during the run are not part of it
WORK=$(mktemp -d "${TMPDIR:-/tmp}/celery-doctor-fresh.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

git clone -q --no-hardlinks "$ROOT" "$WORK/main"
git -C "$WORK/main" checkout -q "$REV"
if [ -d "$ROOT/../shared" ]; then
    cp -a "$ROOT/../shared" "$WORK/shared"
fi
if [ -n "$(git status --porcelain)" ]; then
    echo "fresh check: note: uncommitted changes are not part of the check (it runs HEAD ${REV:0:7})"
fi

SYSTEM_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENV=(HOME="$HOME" PATH="$SYSTEM_PATH" CI=true)
[ -n "${PYTHON:-}" ] && ENV+=(PYTHON="$PYTHON")
start=$(date +%s)
set +e
env -i "${ENV[@]}" bash "$WORK/main/.ci/run" "$@"
status=$?
set -e
echo "fresh check: .ci/run exited $status after $(( $(date +%s) - start )) s (clone of ${REV:0:7} in $WORK)"
exit $status
