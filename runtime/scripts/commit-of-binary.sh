# commit-of-binary.sh (sourced by device-run.sh, device-e2e.sh, device-tp.sh): ody_commit BIN prints
# the short commit results are named after: $ODY_COMMIT when set, else the Go binary's own VCS
# revision (`odyssey version --json`), since the device copy's git metadata can lag the files
# (session 19: a 13B file named after ae11929 while the tree was 557860a); else git; else "unknown".
ody_commit() {
  local v=${ODY_COMMIT:-}
  [ -n "$v" ] || v=$("$1" version --json 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin).get("revision", "")[:7])' 2>/dev/null)
  [ -n "$v" ] || v=$(git rev-parse --short HEAD 2>/dev/null)
  echo "${v:-unknown}"
}
