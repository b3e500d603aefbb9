# Reads the game's command line the way the Godot RL Agents plugin does:
# every `--key=value` becomes key -> "value", a bare `--flag` becomes flag -> "".
# Engine options such as `--fixed-fps 2000` are consumed by Godot before the game sees them.

static func parse() -> Dictionary:
	var arguments := {}
	for argument in OS.get_cmdline_args():
		var text: String = argument.trim_prefix("--")
		var equals := text.find("=")
		if equals >= 0:
			arguments[text.substr(0, equals)] = text.substr(equals + 1)
		else:
			arguments[text] = ""
	return arguments
