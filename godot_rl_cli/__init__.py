"""Shared code of the Godot RL command-line scripts: metrics, Godot env handling, ONNX export, configs."""

from godot_rl_cli import moved

moved.install()  # models and checkpoints saved under the earlier module names still load
