# An agent's controller, as the Godot RL Agents plugin's AIController2D (main branch) behaves:
# it joins the AGENT group the sync node collects, counts physics ticks and asks for a reset
# after `reset_after` of them. A game's controller extends this script and implements get_obs,
# get_reward, get_action_space, set_action (and get_action for recording expert demos).
extends Node2D

enum ControlModes { INHERIT_FROM_SYNC, HUMAN, TRAINING, ONNX_INFERENCE, RECORD_EXPERT_DEMOS }

@export var control_mode: ControlModes = ControlModes.INHERIT_FROM_SYNC
@export var reset_after := 1000
@export var policy_name := "shared_policy"

var heuristic := "human"
var done := false
var reward := 0.0
var n_steps := 0
var needs_reset := false


func _ready() -> void:
	add_to_group("AGENT")


func _physics_process(_delta: float) -> void:
	n_steps += 1
	if n_steps >= reset_after:
		needs_reset = true
		done = true


func get_obs() -> Dictionary:
	assert(false, "get_obs is not implemented by this controller")
	return {"obs": []}


func get_obs_space() -> Dictionary:
	return {"obs": {"size": [get_obs()["obs"].size()], "space": "box"}}


func get_action_space() -> Dictionary:
	assert(false, "get_action_space is not implemented by this controller")
	return {}


func set_action(_action = null) -> void:
	assert(false, "set_action is not implemented by this controller")


func get_action() -> Array:
	assert(false, "get_action is not implemented by this controller (needed to record demos)")
	return []


func get_info() -> Dictionary:
	return {}


func get_reward() -> float:
	return reward


func zero_reward() -> void:
	reward = 0.0


func get_done() -> bool:
	return done


func set_done_false() -> void:
	done = false


func set_heuristic(value: String) -> void:
	heuristic = value


func reset() -> void:
	n_steps = 0
	needs_reset = false
