#!/usr/bin/env bash
# Validates .github/workflows/*.yml against GitHub's workflow schema, so that a misspelled key or
# a wrong type fails here rather than on the first tag push (workflows only run on GitHub).
# check-jsonschema bundles that schema (--builtin-schema): no network is needed once installed.
# It lives in a venv under target/ so nothing system-wide changes; the venv is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/ci-venv
tool=$venv/bin/check-jsonschema
version=0.39.0 # pinned: the bundled schema changes with the release

if ! "$tool" --version 2>/dev/null | grep -qF "$version"; then
    echo "check-workflows: installing check-jsonschema $version into $venv"
    python3 -m venv "$venv" || {
        echo "check-workflows: python3 -m venv failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "check-jsonschema==$version"
fi

shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
[ ${#workflows[@]} -gt 0 ] || { echo "check-workflows: no workflow files found" >&2; exit 1; }
"$tool" --builtin-schema vendor.github-workflows "${workflows[@]}"
