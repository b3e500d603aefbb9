# Pong: two paddles (left_policy, right_policy) keep a ball in play in the square [-1, 1]^2 (the rules
# of the simulated twin, examples/sim/godot_sim.py). +0.5 per hit, -1 per miss; an episode ends after
# 300 steps or 5 misses. The Sync node reads the plugin's --port, --env_seed, --speedup and
# --action_repeat.
extends Node2D

const Sync = preload("res://addons/godot_rl_agents/sync.gd")
const MAX_STEPS := 300
const MAX_MISSES := 5
const PADDLE_HALF := 0.25
const PADDLE_SPEED := 1.5
const PIXELS_PER_UNIT := 300.0

var rng := RandomNumberGenerator.new()
var ball := Vector2.ZERO
var velocity := Vector2.ZERO
var steps := 0
var needs_reset := false
var _ticks_per_step := 8
var _ticks := 0
var _drawn := DisplayServer.get_name() != "headless"

@onready var paddles: Array = [$LeftPaddle, $RightPaddle]


func _ready() -> void:
	var args := Sync.parse_args()
	rng.seed = int(args.get("env_seed", Sync.DEFAULT_SEED))
	_ticks_per_step = maxi(1, int(args.get("action_repeat", "8")))
	$Sync.reset_requested.connect(reset_all)
	reset_all()


func reset_all() -> void:
	for paddle in paddles:
		paddle.new_episode()
	steps = 0
	needs_reset = false
	_serve()


func _serve() -> void:
	ball = Vector2(0.0, rng.randf_range(-0.5, 0.5))
	velocity = Vector2((-1.0 if rng.randi() % 2 == 0 else 1.0) * 0.8, rng.randf_range(-0.6, 0.6))


func _physics_process(delta: float) -> void:
	_ticks += 1
	if needs_reset:
		reset_all()
	else:
		_move(delta)
	if _ticks % _ticks_per_step == 0:
		_end_step()
	if _drawn:
		queue_redraw()


func _move(delta: float) -> void:
	for paddle in paddles:
		paddle.y = clampf(paddle.y + paddle.move * PADDLE_SPEED * delta, -1.0, 1.0)
	ball += velocity * delta
	if absf(ball.y) > 1.0:
		velocity.y = -velocity.y
		ball.y = clampf(ball.y, -1.0, 1.0)
	var side := 0 if ball.x < -1.0 else 1 if ball.x > 1.0 else -1
	if side < 0:
		return
	if absf(ball.y - paddles[side].y) <= PADDLE_HALF:
		_hit(side)
	else:
		_miss(side)


func _hit(side: int) -> void:
	paddles[side].hits += 1
	paddles[side].reward += 0.5
	velocity.x = -velocity.x * 1.05
	ball.x = clampf(ball.x, -1.0, 1.0)


func _miss(side: int) -> void:
	paddles[side].misses += 1
	paddles[side].reward -= 1.0
	_serve()


func _end_step() -> void:
	steps += 1
	if steps >= MAX_STEPS or paddles[0].misses + paddles[1].misses >= MAX_MISSES:
		for paddle in paddles:
			paddle.done = true
		needs_reset = true


# What the agent of paddle `side` reports as its info.
func info(side: int) -> Dictionary:
	return {"hits": paddles[side].hits, "misses": paddles[side].misses}


func _draw() -> void:
	draw_rect(Rect2(-300, -300, 600, 600), Color(0.8, 0.8, 0.8), false, 4.0)
	for paddle in paddles:
		var x := -1.0 if paddle.side == 0 else 1.0
		var top := Vector2(x, paddle.y - PADDLE_HALF) * PIXELS_PER_UNIT
		draw_line(top, top + Vector2(0.0, 2.0 * PADDLE_HALF * PIXELS_PER_UNIT), Color.WHITE, 8.0)
	draw_circle(ball * PIXELS_PER_UNIT, 8.0, Color(1.0, 0.8, 0.2))
