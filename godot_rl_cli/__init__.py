"""Shared code of the Godot RL command-line scripts: metrics, Godot env handling, ONNX export, configs."""
