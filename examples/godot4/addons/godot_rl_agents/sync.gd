# The sync node of a Godot 4 game, written to the Godot RL Agents plugin's main-branch protocol:
# it collects the AGENT group's controllers, connects to the trainer on 127.0.0.1:--port and, every
# --action_repeat physics ticks, sends the agents' step results and blocks until the trainer's next
# action. Messages are a 4-byte little-endian byte count, then UTF-8 JSON. As the plugin does,
# --speedup=N sets Engine.physics_ticks_per_second = 60 * N and Engine.time_scale = N, and
# --env_seed seeds the global random generator.
#
# With --record_demos=PATH (no trainer) it records the first RECORD_EXPERT_DEMOS controller the
# way the plugin's demo recorder does: per decision tick the agent's `obs` array and, unless the
# state is terminal, its get_action(); after --demo_episodes=N episodes it writes the plugin's
# JSON layout (an array of episodes, each [observations, actions]) and quits.
extends Node

signal reset_requested
signal action_received(step: int)

const MAJOR_VERSION := "0"
const DEFAULT_PORT := "11008"
const DEFAULT_SEED := "1"
const CONNECT_SECONDS := 10.0

var args := {}
var action_repeat := 8
var agents: Array = []
var demo_agent: Node = null
var demo_episodes: Array = []
var _demo_trajectory: Array = [[], []]
var _stream := StreamPeerTCP.new()
var _connected := false
var _step_pending := false
var _ticks := 0
var _steps := 0


# Every `--key=value` of OS.get_cmdline_args() as key -> "value", a bare `--flag` as flag -> "".
static func parse_args() -> Dictionary:
	var parsed := {}
	for argument in OS.get_cmdline_args():
		var text: String = argument.trim_prefix("--")
		var equals := text.find("=")
		if equals >= 0:
			parsed[text.substr(0, equals)] = text.substr(equals + 1)
		else:
			parsed[text] = ""
	return parsed


func _ready() -> void:
	process_mode = Node.PROCESS_MODE_ALWAYS
	process_physics_priority = -100  # decides before the agents act in the same tick
	args = parse_args()
	await get_parent().ready
	var speedup := maxf(float(args.get("speedup", "1")), 0.01)
	Engine.physics_ticks_per_second = int(60 * speedup)
	Engine.time_scale = speedup
	action_repeat = maxi(1, int(args.get("action_repeat", str(action_repeat))))
	seed(int(args.get("env_seed", DEFAULT_SEED)))
	for agent in get_tree().get_nodes_in_group("AGENT"):
		if agent.control_mode == agent.ControlModes.RECORD_EXPERT_DEMOS and demo_agent == null:
			demo_agent = agent
		else:
			agents.append(agent)
	if args.has("record_demos"):
		assert(demo_agent != null, "--record_demos needs a controller in RECORD_EXPERT_DEMOS mode")
		demo_agent.set_heuristic("demo_record")
		return
	var port := int(args.get("port", DEFAULT_PORT))
	_connected = _connect_to_trainer(port)
	if not _connected:
		printerr("%s: no trainer is listening on 127.0.0.1:%d; quitting" % [_game_name(), port])
		get_tree().quit(1)
		return
	for agent in agents:
		agent.set_heuristic("model")
	print("%s: connected to 127.0.0.1:%d, %d agents, action_repeat %d, speedup %s" % [_game_name(), port, agents.size(), action_repeat, speedup])


func _game_name() -> String:
	return str(ProjectSettings.get_setting("application/config/name"))


func _connect_to_trainer(port: int) -> bool:
	var deadline := Time.get_ticks_msec() + int(CONNECT_SECONDS * 1000)
	while Time.get_ticks_msec() < deadline:
		_stream = StreamPeerTCP.new()
		if _stream.connect_to_host("127.0.0.1", port) == OK:
			_stream.poll()
			while _stream.get_status() == StreamPeerTCP.STATUS_CONNECTING:
				OS.delay_usec(1000)
				_stream.poll()
			if _stream.get_status() == StreamPeerTCP.STATUS_CONNECTED:
				_stream.set_no_delay(true)
				return true
		OS.delay_msec(50)
	return false


func _physics_process(_delta: float) -> void:
	var decision_tick := _ticks % action_repeat == 0
	_ticks += 1
	if not decision_tick:
		return
	if demo_agent != null and args.has("record_demos"):
		_record_demo_step()
	if not _connected:
		return
	if _step_pending:
		_step_pending = false
		_send({"type": "step", "obs": _observations(), "reward": _rewards(), "done": _dones(), "info": _infos()})
	_serve_until_action()


# Answers the trainer's messages until it sends an action (or leaves).
func _serve_until_action() -> void:
	while _connected:
		var message = _receive()
		if message == null:
			print("%s: the trainer went away; quitting" % _game_name())
			_quit()
			return
		match message.get("type"):
			"handshake":
				if str(message.get("major_version")) != MAJOR_VERSION:
					printerr("WARNING: trainer protocol %s, game protocol %s.x" % [message.get("major_version"), MAJOR_VERSION])
			"env_info":
				_send(_env_info())
			"reset":
				reset_requested.emit()
				for agent in agents:
					agent.zero_reward()
					agent.set_done_false()
				_send({"type": "reset", "obs": _observations(), "info": _infos()})
			"call":
				_send({"type": "call", "returns": _call_on_agents(str(message.get("method")))})
			"action":
				var actions: Array = message["action"]
				for index in range(agents.size()):
					agents[index].set_action(actions[index])
				_steps += 1
				action_received.emit(_steps)
				_step_pending = true
				return
			"close":
				print("%s: the trainer closed the game" % _game_name())
				_quit()
				return
			_:
				printerr("%s: message was not handled: %s" % [_game_name(), message.get("type")])


func _env_info() -> Dictionary:
	var observation_spaces := []
	var action_spaces := []
	var policy_names := []
	for agent in agents:
		observation_spaces.append(agent.get_obs_space())
		action_spaces.append(agent.get_action_space())
		policy_names.append(agent.policy_name)
	return {
		"type": "env_info",
		"observation_space": observation_spaces,
		"action_space": action_spaces,
		"n_agents": agents.size(),
		"agent_policy_names": policy_names,
	}


func _observations() -> Array:
	return agents.map(func(agent): return agent.get_obs())


func _infos() -> Array:
	return agents.map(func(agent): return agent.get_info())


func _rewards() -> Array:
	var rewards := []
	for agent in agents:
		rewards.append(agent.get_reward())
		agent.zero_reward()
	return rewards


func _dones() -> Array:
	var dones := []
	for agent in agents:
		dones.append(agent.get_done())
		agent.set_done_false()
	return dones


func _call_on_agents(method: String) -> Array:
	return agents.map(func(agent): return agent.call(method) if agent.has_method(method) else null)


func _record_demo_step() -> void:
	_demo_trajectory[0].append(demo_agent.get_obs()["obs"])
	demo_agent.set_action()
	var action: Array = demo_agent.get_action()
	if not demo_agent.get_done():
		_demo_trajectory[1].append(action)
		return
	demo_agent.set_done_false()
	demo_episodes.append(_demo_trajectory.duplicate(true))
	_demo_trajectory = [[], []]
	print("%s: recorded demo episode %d" % [_game_name(), demo_episodes.size()])
	if demo_episodes.size() >= int(args.get("demo_episodes", "1")):
		_write_demos(str(args["record_demos"]))


func _write_demos(path: String) -> void:
	var file := FileAccess.open(path, FileAccess.WRITE)
	if file == null:
		printerr("ERROR: cannot write demos to %s (error %d)" % [path, FileAccess.get_open_error()])
		get_tree().quit(1)
		return
	file.store_line(JSON.stringify(demo_episodes, "", false))
	file.close()
	print("%s: wrote %d demo episodes to %s" % [_game_name(), demo_episodes.size(), path])
	get_tree().quit(0)


func _send(message: Dictionary) -> void:
	_stream.put_utf8_string(JSON.stringify(message, "", false))


# Blocks until one whole message has arrived; null when the trainer closed the connection.
func _receive():
	var header: Array = _stream.get_data(4)
	if header[0] != OK:
		return null
	var size: int = (header[1] as PackedByteArray).decode_u32(0)
	var body: Array = _stream.get_data(size)
	if body[0] != OK:
		return null
	var parsed = JSON.parse_string((body[1] as PackedByteArray).get_string_from_utf8())
	if typeof(parsed) != TYPE_DICTIONARY:
		printerr("%s: malformed message from the trainer" % _game_name())
		return {}
	return parsed


func _quit() -> void:
	_connected = false
	_stream.disconnect_from_host()
	get_tree().quit()
