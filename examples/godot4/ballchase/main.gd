# BallChase: each player chases its own target in the square [-1, 1]^2 (the rules of the simulated
# twin, examples/sim/godot_sim.py). Game arguments: --n_agents=N (default 1), --max_steps=N steps per
# episode (default 100), --stagger=K (player i's episodes last max_steps + K * i steps), and
# --record_demos=PATH --demo_episodes=N (player 0 is a scripted expert whose episodes are recorded).
# The Sync node reads the plugin's --port, --env_seed, --speedup and --action_repeat.
extends Node2D

const Sync = preload("res://addons/godot_rl_agents/sync.gd")
const PlayerScene = preload("res://player.tscn")

var players: Array = []


func _ready() -> void:
	var args := Sync.parse_args()
	var rng := RandomNumberGenerator.new()
	rng.seed = int(args.get("env_seed", Sync.DEFAULT_SEED))
	var ticks_per_step := maxi(1, int(args.get("action_repeat", "8")))
	var max_steps := int(args.get("max_steps", "100"))
	var stagger := int(args.get("stagger", "0"))
	for index in range(maxi(1, int(args.get("n_agents", "1")))):
		var player = PlayerScene.instantiate()
		var controller = player.get_node("AIController2D")
		controller.reset_after = (max_steps + stagger * index) * ticks_per_step
		if index == 0 and args.has("record_demos"):
			controller.control_mode = controller.ControlModes.RECORD_EXPERT_DEMOS
		player.rng = rng
		add_child(player)
		players.append(player)
	$Sync.reset_requested.connect(_reset_all)


func _reset_all() -> void:
	for player in players:
		player.new_episode()


func _draw() -> void:
	draw_rect(Rect2(-300, -300, 600, 600), Color(0.8, 0.8, 0.8), false, 4.0)
