#!/usr/bin/env bash
# Usage: wheel_test.sh DIST_DIR. Checks the sdist's contents, installs the wheel (with the
# `distributed` extra) into a fresh virtualenv in a temporary directory, runs wheel_smoke.py
# from there on both backends, so that the installed package is the one under test, and prints
# the platform tag that `auditwheel show` finds.
set -euo pipefail
dist=$(cd "${1:?usage: wheel_test.sh DIST_DIR}" && pwd)
smoke=$(cd "$(dirname "$0")" && pwd)/wheel_smoke.py
python=${PYTHON:-python3}

wheels=("$dist"/*.whl)
sdists=("$dist"/*.tar.gz)
[ ${#wheels[@]} -eq 1 ] && [ -f "${wheels[0]}" ] || { echo "expected one wheel in $dist" >&2; exit 1; }
[ ${#sdists[@]} -eq 1 ] && [ -f "${sdists[0]}" ] || { echo "expected one sdist in $dist" >&2; exit 1; }
echo "wheel: $(basename "${wheels[0]}")"

# The sdist must hold what a build from it needs.
listing=$(tar tzf "${sdists[0]}")
for needed in Cargo.toml Cargo.lock pyproject.toml README.md rust/lib.rs python/freeagentics_rs/__init__.py \
    python/freeagentics_rs/_native.pyi python/freeagentics_rs/py.typed; do
    grep -q "^[^/]*/$needed\$" <<<"$listing" || { echo "sdist lacks $needed" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/python" -m pip install -q "${wheels[0]}[distributed]"
cp "$smoke" "$work/wheel_smoke.py"
cd "$work"
for backend in rust python; do
    echo "backend $backend:"
    env -u PYTHONPATH FREEAGENTICS_RS_BACKEND=$backend PATH="$work/venv/bin:$PATH" \
        "$work/venv/bin/python" wheel_smoke.py
done

# The platform tag, checked against the libraries the extension links (maturin checks it too).
"$work/venv/bin/python" -m pip install -q auditwheel
"$work/venv/bin/auditwheel" show "${wheels[0]}"
