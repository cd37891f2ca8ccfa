#!/usr/bin/env bash
# Runs one named stage of a make target and prints how long it took, so slow stages are visible
# in CI logs: `scripts/stage.sh NAME command args...`.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$EDGEREC_ROOT"
name=$1; shift
start=$(date +%s)
printf '[stage] %s ...\n' "$name"
"$@"
status=$?
elapsed=$(( $(date +%s) - start ))
if [ $status -eq 0 ]; then
  printf '[stage] %s ok in %d s\n' "$name" "$elapsed"
else
  printf '[stage] %s FAILED (exit %d) after %d s\n' "$name" "$status" "$elapsed"
fi
exit $status
