#!/bin/sh
# Starts a Godot 4 project of this folder like an exported game: `launch.sh PROJECT ARGS...`.
# The trainers pass the plugin's arguments (--port=N --env_seed=N --speedup=N --action_repeat=N,
# --fixed-fps N, --disable-render-loop, --headless, game --key=value arguments); they all go to the
# engine before any `--`, because Godot 4's OS.get_cmdline_args(), which the plugin reads, leaves
# out what follows `--`. GODOT4 names the engine (default: the repository's .godot4/godot4 from
# scripts/install_godot4.sh). Without a display the engine runs headless.
here="$(cd "$(dirname "$0")" && pwd)"
project="$here/$1"
shift
godot="${GODOT4:-$here/../../.godot4/godot4}"
if ! command -v "$godot" >/dev/null 2>&1; then
    echo "ERROR: Godot 4 engine $godot not found (run: bash scripts/install_godot4.sh, or set GODOT4 to a Godot 4 binary)" >&2
    exit 127
fi
headless=""
if [ -z "$DISPLAY" ] && [ -z "$WAYLAND_DISPLAY" ]; then
    case " $* " in
    *" --headless "*) ;;
    *) headless="--headless" ;;
    esac
fi
exec "$godot" --path "$project" $headless "$@"
