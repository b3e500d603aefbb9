# BallChase2D: each player (a KinematicBody2D) chases its own target inside a walled arena.
# Game arguments: --n_agents=N (default 2), --policy_mode=shared|split (one policy for all
# players, or `policy_<i>` for player i), plus the plugin's --port, --env_seed, --speedup and
# --action_repeat, read by the Sync node.
extends Node2D

const CommandLine = preload("res://command_line.gd")
const PlayerScene = preload("res://Player.tscn")

func _ready() -> void:
	var arguments: Dictionary = CommandLine.parse()
	var n_agents := int(arguments.get("n_agents", "2"))
	var split_policies: bool = arguments.get("policy_mode", "shared") == "split"
	var rng := RandomNumberGenerator.new()
	rng.seed = int(arguments.get("env_seed", "0"))
	var players := []
	for index in range(max(n_agents, 1)):
		var player = PlayerScene.instance()
		player.setup(rng, "policy_%d" % index if split_policies else "shared_policy")
		add_child(player)
		players.append(player)
	$Sync.start(players, arguments)

func _draw() -> void:
	draw_rect(Rect2(-320, -320, 640, 640), Color(0.8, 0.8, 0.8), false, 4.0)
