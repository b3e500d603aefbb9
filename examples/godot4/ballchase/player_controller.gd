# The BallChase player's AI controller: observation [to-target x/2, y/2, position x, y], a
# continuous 2-d `move` action, and a scripted expert (straight at the target) for recording demos.
extends "res://addons/godot_rl_agents/ai_controller_2d.gd"

@onready var player = get_parent()


func get_obs() -> Dictionary:
	var to_target: Vector2 = player.target - player.pos
	return {"obs": [to_target.x / 2.0, to_target.y / 2.0, player.pos.x, player.pos.y]}


func get_action_space() -> Dictionary:
	return {"move": {"size": 2, "action_type": "continuous"}}


# With an action from the trainer, applies it; without one (recording demos), the expert decides.
func set_action(action = null) -> void:
	var move: Vector2
	if action == null:
		move = (player.target - player.pos) * 10.0
	else:
		move = Vector2(float(action["move"][0]), float(action["move"][1]))
	player.move = move.clamp(Vector2(-1.0, -1.0), Vector2(1.0, 1.0))


func get_action() -> Array:
	return [player.move.x, player.move.y]


func get_info() -> Dictionary:
	return {"distance": snappedf(player.distance, 0.000001), "targets_reached": player.targets_reached}
