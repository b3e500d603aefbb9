# One BallChase player: moves at up to SPEED per second, clamped to the arena. Reward: progress
# towards the target (twice the distance gained), +1 on reaching it, then a new target appears.
extends Node2D

const SPEED := 1.5
const REACH_DISTANCE := 0.15
const PIXELS_PER_UNIT := 300.0

var rng: RandomNumberGenerator
var pos := Vector2.ZERO
var target := Vector2.ZERO
var move := Vector2.ZERO
var distance := 0.0
var targets_reached := 0
var _drawn := DisplayServer.get_name() != "headless"

@onready var ai = $AIController2D


func _ready() -> void:
	new_episode()


func new_episode() -> void:
	pos = Vector2(rng.randf_range(-1.0, 1.0), rng.randf_range(-1.0, 1.0))
	target = _new_target()
	distance = pos.distance_to(target)
	move = Vector2.ZERO
	targets_reached = 0
	ai.reset()
	ai.zero_reward()
	ai.set_done_false()
	_show()


func _new_target() -> Vector2:
	return Vector2(rng.randf_range(-0.9, 0.9), rng.randf_range(-0.9, 0.9))


func _physics_process(delta: float) -> void:
	if ai.needs_reset:
		new_episode()
		return
	pos = (pos + move * SPEED * delta).clamp(Vector2(-1.0, -1.0), Vector2(1.0, 1.0))
	var new_distance := pos.distance_to(target)
	ai.reward += (distance - new_distance) * 2.0
	distance = new_distance
	if distance < REACH_DISTANCE:
		ai.reward += 1.0
		targets_reached += 1
		target = _new_target()
		distance = pos.distance_to(target)
	_show()


func _show() -> void:
	position = pos * PIXELS_PER_UNIT
	if _drawn:
		queue_redraw()


func _draw() -> void:
	draw_circle(Vector2.ZERO, 16.0, Color(0.3, 0.6, 1.0))
	draw_circle((target - pos) * PIXELS_PER_UNIT, 8.0, Color(1.0, 0.8, 0.2))
