"""`--debug_panel`: what the game sends for one real reset and one real step, printed before training.

Both trainers print it from an open game: the agents and their policies, each policy's observation and
action spaces, the reset observation, one sampled action per agent, and the step's observation, rewards,
terminated/truncated flags and info. The game is left mid-episode; training resets it. A panel that fails is
one warning line and training goes on.
"""

from typing import Any, Callable, List, Optional

import numpy as np

from godot_rl_cli.errors import print_warning
from godot_rl_cli.game.env import RobustGodotEnv
from godot_rl_cli.game.errors import StopRequested
from godot_rl_cli.game.spaces import ActionEncoder, flat_action_space

PREVIEW_CHARS = 400


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A short one-line repr (numbers rounded), cut at `limit` characters."""
    with np.printoptions(precision=3, suppress=True, threshold=20, linewidth=10**6):
        text = " ".join(repr(_plain(value)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        if value.size > 16:  # an image: its shape and range say more than its first pixels
            return _Summary(f"<{value.dtype} {value.shape}, min {value.min():.3g}, max {value.max():.3g}>")
        return np.round(value, 3) if value.dtype.kind == "f" else value
    if isinstance(value, (float, np.floating)):
        return round(float(value), 3)
    return value


class _Summary(str):
    def __repr__(self) -> str:
        return str(self)


def debug_panel(game: RobustGodotEnv, title: str, policy_of: Optional[Callable[[int], str]] = None) -> str:
    """The panel's text, from one real reset and one real step with a random action per agent.

    `policy_of(agent_index)` names each agent's policy (default: the game's `agent_policy_names`)."""
    count = game.num_envs
    policies = [policy_of(index) if policy_of else game.agent_policy_names[index] for index in range(count)]
    lines: List[str] = [
        f"=== Debug panel ({title}) ===",
        f"env_path: {game.env_path or '(Godot editor)'} (port {game.port})",
        f"agents: {count}: " + ", ".join(f"{index} -> {policy}" for index, policy in enumerate(policies)),
    ]
    for policy in dict.fromkeys(policies):
        first = policies.index(policy)
        heads = game.action_spaces[first]
        lines += [
            f"policy {policy} (agents {', '.join(str(i) for i, p in enumerate(policies) if p == policy)}):",
            f"  observation space: {game.observation_spaces[first]}",
            f"  action space: {heads} (trained as {flat_action_space(heads)})",
        ]
    observations, _ = game.reset()
    lines += [f"reset observation, agent {index}: {preview(obs)}" for index, obs in enumerate(observations)]
    actions = []
    for index in range(count):
        heads = game.action_spaces[index]
        sample = flat_action_space(heads).sample()
        actions.append(ActionEncoder(heads).encode(np.asarray([sample]))[0])
    lines += [f"sampled action, agent {index}: {preview(action)}" for index, action in enumerate(actions)]
    game.send_actions(actions)
    observations, rewards, terminated, truncated, infos = game.step_recv()
    lines += [f"step observation, agent {index}: {preview(obs)}" for index, obs in enumerate(observations)]
    lines += [
        f"step rewards: {preview(list(rewards))}",
        f"step terminated: {list(terminated)}, truncated: {list(truncated)}",
        f"step info: {preview(list(infos))}",
        "=== end of debug panel ===",
    ]
    return "\n".join(lines)


def print_debug_panel(
    game: RobustGodotEnv, title: str, policy_of: Optional[Callable[[int], str]] = None
) -> None:
    """Print the panel on stdout; if it fails, print one warning line instead (training goes on)."""
    try:
        print(debug_panel(game, title, policy_of), flush=True)
    except (StopRequested, KeyboardInterrupt):
        raise
    except Exception as error:  # the panel is a diagnostic: whatever fails, training must still run
        print_warning(f"debug panel failed: {type(error).__name__}: {error}")
