"""Building the RLlib (old API stack) AlgorithmConfig for a Godot game from a RunSpec.

Why the old API stack: Godot agents all act every step and the game resets each agent itself when it
is done. The new stack's episodes refuse an agent that acts again after it is done and its connectors
expect the env to reset agents, while the old stack's MultiAgentEnv lets a done agent wait (shared
episodes) or continue under a new id (per-agent episodes), and its checkpoints hold one plain torch
policy per id (`policies/<id>/`) that the ONNX converter exports directly. Ray ships it through 2.60.
"""

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

from ray.rllib.policy.policy import PolicySpec
from ray.rllib.utils.replay_buffers import MultiAgentPrioritizedReplayBuffer, MultiAgentReplayBuffer
from ray.tune.registry import register_env

from godot_rl_cli.algorithms import rllib_config_class
from godot_rl_cli.errors import UserError
from godot_rl_cli.game import GameError, GameSettings, RobustGodotEnv
from godot_rl_cli.game.settings import PORT_MAX
from godot_rl_cli.game.spaces import flat_action_space
from godot_rl_cli.rllib.callbacks import ControllerMetricsCallback
from godot_rl_cli.rllib.config import RunSpec, apply_settings
from godot_rl_cli.rllib.env import GodotEnvConfig, GodotMultiAgentEnv, agent_index, flat_observation_space
from godot_rl_cli.rllib.models import configure_model, register_models
from godot_rl_cli.rllib.runners import FAULT_TOLERANCE_DEFAULTS
from godot_rl_cli.rllib.sampler import BatchedRolloutWorker, unsupported_settings
from godot_rl_cli.rllib.self_play import configure_self_play
from godot_rl_cli.rllib.user_code import call_user_code


class _NoEpisodeBufferMeta(type(MultiAgentReplayBuffer)):
    """Ray 2.48 turns the buffer type into a class, then tests `"EpisodeReplayBuffer" in <type>` as if it were
    a string; answering that test lets old-stack DQN and SAC build."""

    def __contains__(cls, item: object) -> bool:
        return False


class OldStackReplayBuffer(MultiAgentReplayBuffer, metaclass=_NoEpisodeBufferMeta):
    """SAC's replay buffer on the old API stack."""


class OldStackPrioritizedReplayBuffer(MultiAgentPrioritizedReplayBuffer, metaclass=_NoEpisodeBufferMeta):
    """DQN's prioritized replay buffer on the old API stack."""


OLD_STACK_REPLAY_BUFFERS = {"DQN": OldStackPrioritizedReplayBuffer, "SAC": OldStackReplayBuffer}
# train_batch_size, rollout_fragment_length and the replay settings count each agent's step, as godot-rl's
# own trainer does (its vector env makes each agent an env), so one YAML means the same update in both; the
# reported steps stay steps of the game (callbacks.env_steps_in_result). A YAML `count_steps_by` overrides.
DEFAULT_COUNT_STEPS_BY = "agent_steps"


def probe_game(settings: GameSettings) -> RobustGodotEnv:
    """Start the game once (as game 0, without a window) to read its agents, policy names and spaces, and for
    the debug panel; the caller closes it."""
    return RobustGodotEnv(dataclasses.replace(settings.for_game(0), show_window=False))


def _mapping(spec_function: Optional[Callable], agent_policy_names: List[str]) -> Callable:
    """RLlib's mapping function: the YAML's (called with the agent's index) or each agent to its own policy
    name."""
    if spec_function is None:

        def mapping(agent_id, episode=None, worker=None, **kwargs):
            return agent_policy_names[agent_index(agent_id)]

        return mapping

    def mapping(agent_id, episode=None, worker=None, **kwargs):
        return spec_function(agent_index(agent_id), episode, worker, **kwargs)

    return mapping


def check_game_ports(port: int, config: Any, runners: int) -> None:
    """Every game's port (port + its index, the evaluation games numbered after the training games) is a
    port: checked before any env runner starts a game on a port that does not exist."""
    envs = int(config.num_envs_per_env_runner)
    games = (runners + 1) * envs
    if config.evaluation_interval:
        games += max(1, int(config.evaluation_num_env_runners or 0)) * envs
    if port + games - 1 > PORT_MAX:
        raise UserError(
            f"env_config port {port} with {games} game(s) needs ports up to {port + games - 1}, "
            f"past {PORT_MAX}",
            f"set env_config port to {PORT_MAX - games + 1} or lower",
        )


def build_config(
    spec: RunSpec,
    settings: GameSettings,
    game: RobustGodotEnv,
    mapping_function: Optional[Callable],
    seed: Optional[int] = None,
) -> Tuple[Any, List[str]]:
    """The AlgorithmConfig for the games `settings` describe (`game`: the probe game) and RLlib's `seed`, and
    the policy ids; raises UserError for a mapping to an undefined policy."""
    names = list(dict.fromkeys(game.agent_policy_names))
    policy_names = spec.policies or names
    mapping = _mapping(mapping_function, game.agent_policy_names)
    agents_of: Dict[str, int] = {}
    for index in range(game.num_envs):
        policy = call_user_code(f"policy_mapping_fn for agent {index}", mapping, index, None, None)
        if policy not in policy_names:
            raise UserError(
                f"policy_mapping_fn maps agent {index} to {policy!r}, which is not a policy "
                f"({', '.join(policy_names)})",
                "map every agent to a policy listed under multiagent.policies",
            )
        agents_of.setdefault(policy, index)
    policies = {
        name: PolicySpec(
            observation_space=flat_observation_space(game, agents_of.get(name, 0)),
            action_space=flat_action_space(game.action_spaces[agents_of.get(name, 0)]),
        )
        for name in policy_names
    }
    register_env("godot", lambda context: GodotMultiAgentEnv(context))
    config = (
        rllib_config_class(spec.algorithm)()
        .api_stack(enable_rl_module_and_learner=False, enable_env_runner_and_connector_v2=False)
        .framework("torch")
        .environment("godot", disable_env_checking=True)
        .multi_agent(
            policies=policies,
            policy_mapping_fn=mapping,
            policies_to_train=spec.policies_to_train,
            count_steps_by=DEFAULT_COUNT_STEPS_BY,
        )
        .callbacks(ControllerMetricsCallback)
        .fault_tolerance(**FAULT_TOLERANCE_DEFAULTS)  # a lost env runner is restarted (runners.py)
        .resources(num_gpus=0)  # IMPALA/APPO otherwise ask for a GPU; a YAML num_gpus still overrides
        .learners(num_gpus_per_learner=0)
        .debugging(log_level="ERROR")
    )
    if (
        spec.algorithm in OLD_STACK_REPLAY_BUFFERS
    ):  # the new stack's default buffer does not work on the old stack
        config.training(replay_buffer_config={"type": OLD_STACK_REPLAY_BUFFERS[spec.algorithm]})
    effective = apply_settings(config, spec.settings)
    if spec.self_play:
        policy_names = configure_self_play(config, spec, game)
    register_models()
    configure_model(
        config,
        {
            name: [(key, game.observation_spaces[index][key].shape) for key in game.observation_key_order]
            for name, index in ((name, agents_of.get(name, 0)) for name in policy_names)
        },
    )
    runners = int(config.num_env_runners)
    check_game_ports(settings.port, config, runners)
    config.env_config = GodotEnvConfig(
        settings,
        shared_episode=spec.env_is_multiagent,
        envs_per_runner=int(config.num_envs_per_env_runner),
        first_runner=1 if runners > 0 else 0,
    ).as_env_config()
    if runners > 0:
        # On the old stack the driver's local worker builds an env (a whole game that never samples) unless
        # this is False; Ray 2.48's RolloutWorker reads it, not create_env_on_local_worker. The local worker
        # still exists and holds the policies the learner trains.
        config.env_runners(create_local_env_runner=False)
    if seed is not None:
        config.seed = seed
    sampler = choose_sampler(spec, config)
    print(
        f"{spec.algorithm} (RLlib old API stack), policies {policy_names}, agents {game.agent_policy_names}; "
        f"settings: {effective}; env_runners {runners} x {config.num_envs_per_env_runner} envs; batch sizes "
        f"count {'each agent' if config.count_steps_by == 'agent_steps' else 'steps of the game'} "
        f"(count_steps_by: {config.count_steps_by}); sampler: {sampler}",
        flush=True,
    )
    return config, policy_names


def choose_sampler(spec: RunSpec, config: Any) -> str:
    """Samples PPO with the suite's batched sampler (rllib/sampler.py) unless the YAML says `sampler: rllib`
    or needs what only RLlib's sampler does; returns which sampler, and why, for the startup line."""
    if spec.sampler == "rllib":
        return "RLlib's (sampler: rllib)"
    if spec.algorithm != "PPO":
        return f"RLlib's (the batched sampler is PPO's, not {spec.algorithm}'s)"
    reason = unsupported_settings(config)
    if reason:
        return f"RLlib's (the batched sampler does not do {reason})"
    config.env_runners(env_runner_cls=BatchedRolloutWorker)
    return "batched (sampler: rllib for RLlib's own)"


def find_game_error(error: BaseException) -> Optional[GameError]:
    """The GameError behind an exception Ray may have wrapped (RayTaskError, actor errors), if any."""
    seen = set()
    pending = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, GameError):
            return current
        pending += [getattr(current, "cause", None), current.__cause__, current.__context__]
    return None
