# The Godot RL Agents sync node, for Godot 3: connects to the trainer on 127.0.0.1:--port and
# speaks the plugin's wire protocol (a 4-byte little-endian byte count, then UTF-8 JSON; Godot's
# own put_utf8_string writes exactly that). Every --action_repeat physics ticks it sends the
# players' step results and blocks until the trainer's next action, so the game advances only
# as fast as the trainer asks. As the plugin does, --speedup=N sets
# Engine.iterations_per_second = 60 * N and Engine.time_scale = N.
extends Node

const PROTOCOL_MAJOR_VERSION := "0"
const DEFAULT_PORT := "11008"
const CONNECT_ATTEMPTS := 100
const CONNECT_RETRY_USEC := 100000

var _stream := StreamPeerTCP.new()
var _players := []
var _action_repeat := 8
var _ticks := 0
var _connected := false
var _step_pending := false

func _ready() -> void:
	process_priority = -100  # runs before the players in every physics tick

func start(players: Array, arguments: Dictionary) -> void:
	_players = players
	_action_repeat = max(1, int(arguments.get("action_repeat", "8")))
	var speedup: float = max(1.0, float(arguments.get("speedup", "1")))
	Engine.iterations_per_second = int(60 * speedup)
	Engine.time_scale = speedup
	var port := int(arguments.get("port", DEFAULT_PORT))
	_connected = _connect_to_trainer(port)
	if not _connected:
		printerr("BallChase2D: no trainer is listening on 127.0.0.1:%d; quitting" % port)
		get_tree().quit(1)
		return
	print("BallChase2D: connected to 127.0.0.1:%d, %d players, action_repeat %d, speedup %s" % [port, players.size(), _action_repeat, speedup])

func _connect_to_trainer(port: int) -> bool:
	for _attempt in range(CONNECT_ATTEMPTS):
		_stream = StreamPeerTCP.new()
		if _stream.connect_to_host("127.0.0.1", port) == OK:
			while _stream.get_status() == StreamPeerTCP.STATUS_CONNECTING:
				OS.delay_usec(1000)
			if _stream.get_status() == StreamPeerTCP.STATUS_CONNECTED:
				_stream.set_no_delay(true)
				return true
		OS.delay_usec(CONNECT_RETRY_USEC)
	return false

func _physics_process(_delta: float) -> void:
	if not _connected:
		return
	_ticks += 1
	if (_ticks - 1) % _action_repeat != 0:
		return
	if _step_pending:
		_step_pending = false
		_send_step()
	_serve_until_action()

func _send_step() -> void:
	var obs := []
	var rewards := []
	var dones := []
	var infos := []
	for player in _players:
		obs.append(player.get_obs())
		rewards.append(player.get_reward())
		dones.append(player.get_done())
		infos.append(player.get_info())
		player.zero_reward()
	_send({"type": "step", "obs": obs, "reward": rewards, "done": dones, "info": infos})
	for player in _players:
		if player.get_done():
			player.reset()

# Answers the trainer's messages until it sends an action (or leaves).
func _serve_until_action() -> void:
	while _connected:
		var message = _receive()
		if message == null:
			print("BallChase2D: the trainer went away; quitting")
			_quit()
			return
		match message.get("type"):
			"handshake":
				if str(message.get("major_version")) != PROTOCOL_MAJOR_VERSION:
					printerr("BallChase2D: trainer protocol %s, game protocol %s.x" % [message.get("major_version"), PROTOCOL_MAJOR_VERSION])
			"env_info":
				_send(_env_info())
			"reset":
				for player in _players:
					player.reset()
					player.zero_reward()
				_send({"type": "reset", "obs": _observations()})
			"call":
				_send({"type": "call", "returns": _call_on_players(str(message.get("method")))})
			"action":
				var actions: Array = message["action"]
				for index in range(_players.size()):
					_players[index].set_action(actions[index])
				_step_pending = true
				return
			"close":
				print("BallChase2D: the trainer closed the game")
				_quit()
				return
			_:
				printerr("BallChase2D: unknown message type %s" % message.get("type"))

func _env_info() -> Dictionary:
	var observation_spaces := []
	var action_spaces := []
	var policy_names := []
	for player in _players:
		observation_spaces.append(player.get_obs_space())
		action_spaces.append(player.get_action_space())
		policy_names.append(player.policy_name)
	return {
		"type": "env_info",
		"observation_space": observation_spaces,
		"action_space": action_spaces,
		"n_agents": _players.size(),
		"agent_policy_names": policy_names,
	}

func _observations() -> Array:
	var obs := []
	for player in _players:
		obs.append(player.get_obs())
	return obs

func _call_on_players(method: String) -> Array:
	var returns := []
	for player in _players:
		returns.append(player.call(method) if player.has_method(method) else null)
	return returns

func _send(message: Dictionary) -> void:
	_stream.put_utf8_string(to_json(message))

# Blocks until one whole message has arrived; null when the trainer closed the connection.
func _receive():
	var header: Array = _stream.get_data(4)
	if header[0] != OK:
		return null
	var size_bytes: PoolByteArray = header[1]
	var size := size_bytes[0] | (size_bytes[1] << 8) | (size_bytes[2] << 16) | (size_bytes[3] << 24)
	var body: Array = _stream.get_data(size)
	if body[0] != OK:
		return null
	var parsed := JSON.parse((body[1] as PoolByteArray).get_string_from_utf8())
	if parsed.error != OK or typeof(parsed.result) != TYPE_DICTIONARY:
		printerr("BallChase2D: malformed message from the trainer: %s" % parsed.error_string)
		return {}
	return parsed.result

func _quit() -> void:
	_connected = false
	_stream.disconnect_from_host()
	get_tree().quit()
