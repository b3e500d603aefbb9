# PongDuel: zero-sum Pong for self-play (the rules and game arguments of the simulated twin, examples/sim's
# PongDuel). A miss scores +1 for the other side and -1 for the side that missed, a hit earns nothing; the
# episode ends when a side has --points points (default 3) or after MAX_STEPS steps, and each agent's info
# says who won: "won" is 1 (won), 0 (draw) or -1 (lost) at the episode's end. With --opponent=scripted (skill
# --opponent_skill, default 0.7: the share of balls it goes for) or --opponent=random the game moves the
# right paddle itself and only left_policy's agent is exposed; --opponent=agent (the default) exposes both.
extends "res://pong.gd"

const OPPONENTS := ["agent", "scripted", "random"]

var opponent := "agent"
var skill := 0.7
var points_to_win := 3
var points := [0, 0]
var outcome := [0, 0]
var tracking := true
var opponent_rng := RandomNumberGenerator.new()


func _ready() -> void:
	ProjectSettings.set_setting("application/config/name", "PongDuel")  # the name in the game's messages
	var args := Sync.parse_args()
	opponent = str(args.get("opponent", "agent"))
	if opponent not in OPPONENTS:
		printerr("unknown opponent %s; choose from %s" % [opponent, ", ".join(OPPONENTS)])
		get_tree().quit(1)
	skill = float(args.get("opponent_skill", "0.7"))
	points_to_win = int(args.get("points", "3"))
	opponent_rng.seed = int(args.get("env_seed", Sync.DEFAULT_SEED)) + 7919
	if opponent != "agent":
		$RightPaddle.remove_from_group("AGENT")  # before the Sync node collects the agents
	super._ready()


func reset_all() -> void:
	points = [0, 0]
	outcome = [0, 0]
	super.reset_all()


func _serve() -> void:
	super._serve()
	_decide_tracking()


func _decide_tracking() -> void:
	tracking = opponent_rng.randf() < skill


func _move(delta: float) -> void:
	if opponent != "agent":
		paddles[1].move = _scripted_move()
	super._move(delta)


# The scripted right paddle: follows the ball it decided to go for, else moves at random; back to the
# middle while the ball moves away.
func _scripted_move() -> float:
	if opponent == "random" or (velocity.x > 0.0 and not tracking):
		return [-1.0, 0.0, 1.0][opponent_rng.randi_range(0, 2)]
	var target := ball.y if velocity.x > 0.0 else 0.0
	var gap: float = target - paddles[1].y
	return 0.0 if absf(gap) < 0.05 else signf(gap)


func _hit(side: int) -> void:
	super._hit(side)
	paddles[side].reward -= 0.5  # no reward for a hit: zero-sum
	if side == 0:
		_decide_tracking()  # returned by the left paddle: the scripted side decides again


func _miss(side: int) -> void:
	points[1 - side] += 1
	paddles[1 - side].reward += 1.0
	super._miss(side)


func _end_step() -> void:
	steps += 1
	if steps >= MAX_STEPS or maxi(points[0], points[1]) >= points_to_win:
		var difference: int = points[0] - points[1]
		outcome = [signi(difference), -signi(difference)]
		for paddle in paddles:
			paddle.done = true
		needs_reset = true


func info(side: int) -> Dictionary:
	return {
		"hits": paddles[side].hits,
		"points": points[side],
		"opponent_points": points[1 - side],
		"won": outcome[side],
	}
