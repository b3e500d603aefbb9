"""Playback of a Godot game for the controller's Simulator and Interface tabs (simulator.py, interface_*.py).

- `options`: the shared command-line flags (light: no ML imports).
- `lines`: the `@SIM_*` / `@INTERFACE_*` line protocol, compact rows, the action-line rate limit.
- `loop`: the one playback loop (events, attempts and restarts, episodes, SIGINT).
- `sources`: action sources: random actions, and the base of the model sources `sb3_source`,
  `rllib_source` and `onnx_source` (imported only when used).
"""
