# A Pong paddle and its AI controller: observation [ball x, ball y, ball velocity x, y, own paddle,
# other paddle] with x mirrored for the left paddle (both see the ball coming from the same side),
# and a discrete `move` action: 0 stay, 1 up, 2 down.
extends "res://addons/godot_rl_agents/ai_controller_2d.gd"

const MOVES := [0.0, 1.0, -1.0]

@export var side := 0

var y := 0.0
var move := 0.0
var hits := 0
var misses := 0

@onready var game = get_parent()


func new_episode() -> void:
	y = 0.0
	move = 0.0
	hits = 0
	misses = 0
	reset()
	zero_reward()
	set_done_false()


func _physics_process(_delta: float) -> void:
	pass  # the game decides when an episode ends (after MAX_STEPS steps or MAX_MISSES misses)


func get_obs() -> Dictionary:
	var mirror := -1.0 if side == 0 else 1.0
	var other: float = game.paddles[1 - side].y
	return {"obs": [game.ball.x * mirror, game.ball.y, game.velocity.x * mirror, game.velocity.y, y, other]}


func get_action_space() -> Dictionary:
	return {"move": {"size": 3, "action_type": "discrete"}}


func set_action(action = null) -> void:
	move = MOVES[int(action["move"])]


func get_info() -> Dictionary:
	return game.info(side)
