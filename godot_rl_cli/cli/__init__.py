"""Entry points of the suite's commands: one module a script, each with `main(argv=None) -> int`.

The top-level scripts the Training Controller runs by path, the console commands and
`python -m godot_rl_cli.cli.<name>` all call these mains.
"""
