# One agent, with the methods the Godot RL Agents plugin expects of an AI controller:
# get_obs, get_reward, get_done, set_action, get_info, zero_reward, reset, and the
# obs/action space descriptions. Reward: progress towards the target, +1 on reaching it.
extends KinematicBody2D

const ARENA_HALF_SIZE := 320.0
const SPEED := 200.0
const REACH_DISTANCE := 32.0
const EPISODE_TICKS := 800

var policy_name := "shared_policy"
var done := false
var _rng: RandomNumberGenerator
var _target := Vector2.ZERO
var _move := Vector2.ZERO
var _velocity := Vector2.ZERO
var _reward := 0.0
var _ticks := 0
var _targets_reached := 0
var _last_distance := 0.0
var _drawn := OS.get_name() != "Server"

func setup(rng: RandomNumberGenerator, policy: String) -> void:
	_rng = rng
	policy_name = policy
	reset()

func reset() -> void:
	position = _random_point()
	_target = _random_point()
	_last_distance = position.distance_to(_target)
	_move = Vector2.ZERO
	_velocity = Vector2.ZERO
	_ticks = 0
	_targets_reached = 0
	done = false

func _random_point() -> Vector2:
	var limit := ARENA_HALF_SIZE - 40.0
	return Vector2(_rng.randf_range(-limit, limit), _rng.randf_range(-limit, limit))

func _physics_process(_delta: float) -> void:
	_velocity = move_and_slide(_move * SPEED)
	var distance := position.distance_to(_target)
	_reward += (_last_distance - distance) / ARENA_HALF_SIZE * 2.0
	_last_distance = distance
	if distance < REACH_DISTANCE:
		_reward += 1.0
		_targets_reached += 1
		_target = _random_point()
		_last_distance = position.distance_to(_target)
	_ticks += 1
	if _ticks >= EPISODE_TICKS:
		done = true
	if _drawn:
		update()

# Drawn only by a Godot 3 build with a renderer (GODOT3=godot3, --viz); the headless server skips it.
func _draw() -> void:
	draw_circle(Vector2.ZERO, 16.0, Color(0.3, 0.6, 1.0))
	draw_circle(_target - position, 8.0, Color(1.0, 0.8, 0.2))

func get_obs_space() -> Dictionary:
	return {"obs": {"size": [6], "space": "box"}}

func get_action_space() -> Dictionary:
	return {"move": {"size": 2, "action_type": "continuous"}}

func get_obs() -> Dictionary:
	var to_target := (_target - position) / (2.0 * ARENA_HALF_SIZE)
	return {"obs": [to_target.x, to_target.y, position.x / ARENA_HALF_SIZE, position.y / ARENA_HALF_SIZE, _velocity.x / SPEED, _velocity.y / SPEED]}

func set_action(action: Dictionary) -> void:
	var move: Array = action["move"]
	_move = Vector2(clamp(float(move[0]), -1.0, 1.0), clamp(float(move[1]), -1.0, 1.0))

func get_reward() -> float:
	return _reward

func zero_reward() -> void:
	_reward = 0.0

func get_done() -> bool:
	return done

func get_info() -> Dictionary:
	return {"targets_reached": _targets_reached, "distance": _last_distance / ARENA_HALF_SIZE}
