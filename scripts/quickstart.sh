#!/usr/bin/env bash
# The main job end to end on the bundled example game: train a policy with the SB3 script, then
# export it to an ONNX file the Godot plugin can run (sets up .venv first). Output: quickstart_run/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_venv.sh
out=quickstart_run
.venv/bin/python stable_baselines3_training_script.py \
  --env_path=examples/sim/BallChase.x86_64 --game_arg n_agents=4 --n_parallel=2 \
  --timesteps=20000 --experiment_dir="$out" --experiment_name=ballchase \
  --save_model_path="$out/ballchase.zip" --save_checkpoint_frequency=10000
.venv/bin/python convert_sb3_to_onnx.py "$out/ballchase.zip" --output "$out/ballchase.onnx"
echo "Done: trained model $out/ballchase.zip, ONNX policy $out/ballchase.onnx"
