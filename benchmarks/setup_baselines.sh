#!/usr/bin/env bash
# Build benchmarks/.venv-baselines: helpers plus `higher` and `learn2learn`, for sinusoid_meta_step.py.
#
# Why a separate environment: learn2learn 0.2.0 (its latest release) imports torchvision and gym at import
# time, and PyPI's torchvision only imports beside the torch release it was built for (torch 2.14.1 with
# torchvision 0.29.1), not beside the project's pinned torch 2.13.0. Its sdist also ships C files generated
# by an old Cython that no longer compile on Python 3.11 (longintrepr.h), so they are regenerated here.
# Nothing of theirs is committed; everything lands in the git-ignored folder below.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=benchmarks/.venv-baselines
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet torch==2.14.1 torchvision==0.29.1 numpy tqdm matplotlib ipywidgets ipython \
    cython gym==0.26.2 scipy pandas requests higher==0.2.1
"$VENV/bin/pip" download --quiet --no-deps --no-binary=:all: -d "$BUILD" learn2learn==0.2.0
tar xzf "$BUILD"/learn2learn-0.2.0.tar.gz -C "$BUILD"
(cd "$BUILD/learn2learn-0.2.0" && "$OLDPWD/$VENV/bin/cythonize" -3 learn2learn/data/*.pyx >/dev/null \
    && "$OLDPWD/$VENV/bin/pip" install --quiet --no-deps --no-build-isolation .)
"$VENV/bin/pip" install --quiet --no-deps -e .
"$VENV/bin/python" -c "import higher, learn2learn, helpers; print('baselines ready:', learn2learn.__version__)"
