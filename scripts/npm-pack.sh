#!/usr/bin/env bash
# Packs the npm launcher (jetstart-rs) and one platform package (@jetstart-rs/<os>-<cpu>) around a
# built binary, and prints the two tarball paths: the platform's first, then the launcher's.
#
#   scripts/npm-pack.sh [BINARY] [OUT_DIR] [PLATFORM]
#     BINARY    default target/dist/jetstart-rs if it exists, else target/release/jetstart-rs
#     OUT_DIR   default target/npm (staged package folders and the tarballs go there)
#     PLATFORM  node's "<process.platform>-<process.arch>" of the binary, default this machine's;
#               the release workflow packs every platform's binary on one Linux runner
#
# The files in npm/ carry a placeholder version: the real one is Cargo.toml's, stamped into staged
# copies, so a release bumps one file and npm/ itself is never rewritten.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd) # paths in the arguments stay relative to the caller's cwd
die() { echo "npm-pack: $*" >&2; exit 1; }
for tool in node npm; do command -v "$tool" >/dev/null || die "$tool must be on PATH"; done

platform=${3:-$(node -p 'process.platform + "-" + process.arch')}
exe=jetstart-rs
case $platform in win32-*) exe=jetstart-rs.exe ;; esac

bin=${1:-}
if [ -z "$bin" ]; then
    bin=$root/target/release/$exe
    [ -f "$root/target/dist/$exe" ] && bin=$root/target/dist/$exe
fi
[ -f "$bin" ] || die "no binary at $bin (build one with: cargo build --locked --release)"
out=${2:-$root/target/npm}

# The first `version = "..."` inside the [package] table.
version=$(awk '/^\[/ { in_pkg = ($0 == "[package]") }
    in_pkg && /^version *= *"/ { sub(/^version *= *"/, ""); sub(/".*/, ""); print; exit }' "$root/Cargo.toml")
[ -n "$version" ] || die "no [package] version found in Cargo.toml"

launcher=$out/jetstart-rs
staged=$out/jetstart-rs-$platform
rm -rf "$launcher" "$staged"
mkdir -p "$launcher" "$staged/bin"
cp -R "$root/npm/jetstart-rs/." "$launcher/"
cp "$bin" "$staged/bin/$exe"
chmod 755 "$staged/bin/$exe" "$launcher/bin/jetstart-rs" # npm pack keeps the mode bits

# JSON is edited with node rather than sed: it is there anyway, and it fails loudly on bad input.
node - "$launcher/package.json" "$root/npm/platform/package.json.in" "$staged/package.json" \
    "$version" "$platform" <<'EOF'
const fs = require('fs');
const [launcherJson, template, platformJson, version, platform] = process.argv.slice(2);
const fail = (msg) => { console.error(`npm-pack: ${msg}`); process.exit(1); };

const launcher = JSON.parse(fs.readFileSync(launcherJson, 'utf8'));
launcher.version = version;
const deps = launcher.optionalDependencies;
for (const name of Object.keys(deps)) deps[name] = version;
const name = `@jetstart-rs/${platform}`;
if (!(name in deps)) {
  fail(`${platform} is not a supported platform (npm/jetstart-rs/package.json's ` +
       `optionalDependencies list: ${Object.keys(deps).join(', ')})`);
}
fs.writeFileSync(launcherJson, JSON.stringify(launcher, null, 2) + '\n');

const [os, cpu] = platform.split('-');
const values = { PLATFORM: platform, VERSION: version, OS: os, CPU: cpu };
const text = fs.readFileSync(template, 'utf8').replace(/@([A-Z]+)@/g, (m, key) => values[key] ?? m);
const pkg = JSON.parse(text);
if (os !== 'linux') delete pkg.libc; // the binaries for Linux are the glibc (-gnu) builds
fs.writeFileSync(platformJson, JSON.stringify(pkg, null, 2) + '\n');
EOF

abs_out=$(cd "$out" && pwd)
for dir in "$staged" "$launcher"; do
    tarball=$(cd "$dir" && npm pack --loglevel=error --ignore-scripts --pack-destination "$abs_out" | tail -n 1)
    [ -f "$abs_out/$tarball" ] || die "npm pack in $dir made no tarball"
    echo "$abs_out/$tarball"
done
