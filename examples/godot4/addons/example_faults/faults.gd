# Engine faults for restart tests, as game arguments (the simulated games' names):
# --crash_after_steps=N crashes the engine (OS.crash) on action N + 1, --hang_after_steps=N stops
# answering from action N + 1 on. With --fault_seed=S they apply only to the game started with
# --env_seed=S (one of several parallel games).
extends Node

const Sync = preload("res://addons/godot_rl_agents/sync.gd")

var _crash_after := -1
var _hang_after := -1


func _ready() -> void:
	var args := Sync.parse_args()
	if args.has("fault_seed") and args["fault_seed"] != args.get("env_seed", Sync.DEFAULT_SEED):
		return
	_crash_after = int(args.get("crash_after_steps", "-1"))
	_hang_after = int(args.get("hang_after_steps", "-1"))
	if _crash_after >= 0 or _hang_after >= 0:
		get_parent().get_node("Sync").action_received.connect(_on_action)


func _on_action(step: int) -> void:
	if _crash_after >= 0 and step > _crash_after:
		printerr("simulated engine crash after %d steps" % _crash_after)
		OS.crash("simulated engine crash after %d steps" % _crash_after)
	if _hang_after >= 0 and step > _hang_after:
		printerr("simulated hang after %d steps" % _hang_after)
		while true:
			OS.delay_msec(1000)
