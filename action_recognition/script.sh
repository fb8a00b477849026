#!/usr/bin/env bash
# Train and test a TimeSformer (+3DTRL):  bash script.sh CONFIG DATA_DIR OUTPUT_DIR [KEY VALUE ...]
# CONFIG is a file name in configs/ (a bare name such as TimeSformer_3DTRL_Smarthome.yaml, or one of the
# release's names such as TimeSformer_ST_8x32_224_NTU.yaml or Kinetics/TimeSformer_divST_8x32_224.yaml) or a
# path to a config file (configs/X.yaml, or your own file anywhere); extra KEY VALUE pairs override it.
set -euo pipefail
if [ "$#" -lt 3 ]; then
    echo "usage: bash script.sh CONFIG DATA_DIR OUTPUT_DIR [KEY VALUE ...]" >&2
    exit 2
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CONFIG="$1"; DATA_DIR="$2"; OUTPUT_DIR="$3"; shift 3
# The release's SlowFast and Charades configs name models that are not part of this project.
case "$(basename "$CONFIG")" in
    SLOWFAST_*|*Charades*)
        if [ ! -f "$CONFIG" ]; then
            echo "error: $CONFIG is one of the release's SlowFast/Charades configs: those models are not part of this project (TimeSformer with or without 3DTRL only)" >&2
            exit 2
        fi ;;
esac
# A relative path is looked for from here, then in this folder, then in configs/ (the release's
# configs/$config, e.g. Kinetics/TimeSformer_divST_8x32_224.yaml).
case "$CONFIG" in
    /*) ;;
    *) for candidate in "$PWD/$CONFIG" "$HERE/$CONFIG" "$HERE/configs/$CONFIG"; do
           if [ -f "$candidate" ]; then CONFIG="$candidate"; break; fi
       done ;;
esac
if [ ! -f "$CONFIG" ]; then
    echo "error: config file not found: $CONFIG" >&2
    exit 2
fi
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$PWD/$DATA_DIR" ;; esac
case "$OUTPUT_DIR" in /*) ;; *) OUTPUT_DIR="$PWD/$OUTPUT_DIR" ;; esac
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
    if [ -x "$HERE/../.venv/bin/python" ]; then PYTHON="$HERE/../.venv/bin/python"; else PYTHON=python3; fi
fi
# Found, not imported: importing torch here would add seconds to every launch.
INSTALLED="import importlib.util, sys; sys.exit(not all(importlib.util.find_spec(m) for m in sys.argv[1:]))"
if ! "$PYTHON" -c "$INSTALLED" threedtrl.timesformer torch timm 2>/dev/null; then
    echo "error: the project is not installed in $PYTHON: run pip install -e . in $HERE/.. (or make venv)" >&2
    exit 2
fi
# The release read relative video paths from where it ran; the lists' relative paths are also looked for here.
export SCRIPT_CALLER_DIR="$PWD"
cd "$HERE"
exec "$PYTHON" tools/run_net.py --cfg "$CONFIG" \
    DATA.PATH_TO_DATA_DIR "$DATA_DIR" OUTPUT_DIR "$OUTPUT_DIR" "$@"
