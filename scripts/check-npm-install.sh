#!/usr/bin/env bash
# CI check of the npm distribution, the way most users get jetstart-rs: packs the launcher and this
# machine's platform package around a built binary, installs both tarballs with `npm install -g`
# into a throwaway prefix, and runs the installed command through the Node launcher.
#
#   scripts/check-npm-install.sh [BINARY]    (BINARY as for scripts/npm-pack.sh)
#
# The install is --offline with an empty cache: it must not need the registry, even though the
# launcher's optionalDependencies name the other platforms' packages, which are nowhere to be had.
set -euo pipefail
fail() { echo "npm-install: FAIL: $*" >&2; exit 1; }
ok() { echo "npm-install: ok: $*"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/jetstart-npm.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

tarballs=$("$(dirname "$0")/npm-pack.sh" "${1:-}" "$tmp/pack")
platform_tgz=$(sed -n 1p <<<"$tarballs")
launcher_tgz=$(sed -n 2p <<<"$tarballs")
version=$(basename "$launcher_tgz" .tgz)
version=${version#jetstart-rs-}
ok "packed $(basename "$platform_tgz") and $(basename "$launcher_tgz")"

install() { # PREFIX TARBALL...
    local prefix=$1
    shift
    npm install -g --prefix "$prefix" --cache "$tmp/cache" --offline --no-audit --no-fund \
        --loglevel=error "$@" >"$tmp/install.log" 2>&1 || {
        cat "$tmp/install.log" >&2
        fail "npm install -g $*"
    }
}
install "$tmp/prefix" "$platform_tgz" "$launcher_tgz"
cmd=$tmp/prefix/bin/jetstart-rs
[ -x "$cmd" ] || fail "npm install -g made no $cmd"
ok "npm install -g --offline of both tarballs"

out=$("$cmd" --version) || fail "jetstart-rs --version exited $?"
[ "$out" = "jetstart-rs $version" ] || fail "jetstart-rs --version printed '$out', not 'jetstart-rs $version'"
ok "jetstart-rs --version prints '$out'"

out=$("$cmd" dev --help) || fail "jetstart-rs dev --help exited $?"
grep -q -- '--project' <<<"$out" || fail "jetstart-rs dev --help does not mention --project"
ok "jetstart-rs dev --help"

# clap's usage errors exit 2: the launcher must hand the binary's exit code on unchanged.
status=0
"$cmd" dev --no-such-flag >/dev/null 2>&1 || status=$?
[ "$status" -eq 2 ] || fail "jetstart-rs dev --no-such-flag exited $status, not 2"
ok "exit code of a bad flag (2) forwarded"

# A SIGTERM to the launcher alone (a supervisor, `kill <pid>`) must stop the server cleanly, not
# orphan it: the session file it wrote on start is gone afterwards, and so is the server.
project=$tmp/project
mkdir -p "$project/app"
echo "include ':app'" >"$project/settings.gradle"
"$cmd" dev --project "$project" --port 0 --ws-port 0 --bind 127.0.0.1 --host 127.0.0.1 \
    --no-qr --no-initial-build --build-cmd true >"$tmp/dev.log" 2>&1 &
launcher=$!
for _ in $(seq 100); do
    [ -f "$project/.jetstart/session.properties" ] && break
    sleep 0.1
done
[ -f "$project/.jetstart/session.properties" ] || { cat "$tmp/dev.log" >&2; fail "dev did not start"; }
kill -TERM "$launcher"
for _ in $(seq 50); do
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$launcher" 2>/dev/null; then
    kill -KILL "$launcher"
    fail "the launcher did not exit within 5 s of SIGTERM"
fi
status=0
wait "$launcher" || status=$?
[ ! -f "$project/.jetstart/session.properties" ] || fail "SIGTERM left the session file: no clean stop"
pgrep -f -- "--project $project" >/dev/null && fail "the server outlived the launcher"
[ "$status" -eq 0 ] || fail "dev stopped by SIGTERM exited $status, not 0"
ok "SIGTERM to the launcher stops the server cleanly"

# Without its platform package (an unsupported platform, or --omit=optional), the launcher says
# which package is missing instead of a Node stack trace.
install "$tmp/bare" "$launcher_tgz"
status=0
err=$("$tmp/bare/bin/jetstart-rs" --version 2>&1) || status=$?
if [ "$status" -ne 1 ] || ! grep -q '@jetstart-rs/.*cargo install jetstart-rs' <<<"$err"; then
    fail "launcher alone exited $status with '$err'"
fi
ok "launcher alone names the missing platform package"
