"""The one playback loop behind simulator.py, interface_sb3_raw.py and interface_rllib_raw.py.

A run: a `settings` event; the action source is opened (a model is loaded; a bad one is an `ERROR:`
line and exit 1 before any game starts); then attempts until a limit is reached or a signal comes.
An attempt starts the game (or waits for the Godot editor), says `connected` with its attempt number
and mode, binds the action source to the game (a model that does not fit is an `error` event naming
both shapes), resets it and plays episodes. A game that crashes, hangs or breaks the protocol is an
`error` event, not a traceback; the next attempt starts after `--restart-delay`, or the run exits 1
with `--no-auto-restart`.

Episodes: the game's agents act every step and the game restarts each agent itself when it is done,
maybe at different steps. Each agent's episode reward and length run until its own `done`; an
episode of the run ends once every agent has finished one (for a game whose agents finish together:
at that step). `--max-steps N` ends the episode after N steps (agents not done are `truncated`) and
resets the game.

Stopping: the first SIGINT or SIGTERM makes every wait for the game give up within a poll interval
(`request_stop`), closes the game (killed if it has not quit CLOSE_GRACE_S later) and exits 0; a
second one ends the games at once. A game never outlives the script, SIGKILL included (the game
layer starts games with the kernel's parent-death signal).
"""

import gc
import sys
import threading
import traceback
from argparse import Namespace
from typing import Any, Callable, Dict, List, Optional, TextIO

from godot_rl_cli.errors import UserError, print_error
from godot_rl_cli.game import (
    GameConnectError,
    GameError,
    RobustGodotEnv,
    StopRequested,
    request_stop,
    stop_all_games,
    validate_env_path,
)
from godot_rl_cli.play.lines import (
    ActionLineLimiter,
    LineWriter,
    claim_stdout,
    compact_action,
    compact_observation,
)
from godot_rl_cli.play.options import game_settings, interface_settings, require_agent_path
from godot_rl_cli.play.sources import ActionSource, PlaybackError, describe_game_observations, describe_space
from godot_rl_cli.signals import StopSignals

FINISHED, STOPPED, FAILED, FATAL = "finished", "stopped", "failed", "fatal"
CLOSE_GRACE_S = 0.3
AGENTS_IN_MESSAGES = 8


def resolve_mode(requested: str, agent_policy_names: List[str]) -> str:
    """`auto`: multi when the game names more than one policy, else single."""
    if requested != "auto":
        return requested
    return "multi" if len(set(agent_policy_names)) > 1 else "single"


def agent_ids(mode: str, count: int) -> List[str]:
    """Row ids: `agent_<i>` for the single (vectorised) view, the game's agent index as a string for multi."""
    return [f"agent_{index}" if mode == "single" else str(index) for index in range(count)]


def listed(pairs: Dict[str, Any], fmt: str = "{}") -> str:
    """'a: 1, b: 2' for at most AGENTS_IN_MESSAGES entries."""
    shown = [f"{key}: {fmt.format(value)}" for key, value in list(pairs.items())[:AGENTS_IN_MESSAGES]]
    more = len(pairs) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


class EpisodeTracker:
    """Each agent's running episode reward and length, and which agents finished one in this episode."""

    def __init__(self, ids: List[str]):
        self.ids = ids
        self.running = [0.0] * len(ids)
        self.lengths = [0] * len(ids)
        self.steps = 0
        self.finished: List[Optional[tuple]] = [None] * len(ids)

    def start(self) -> None:
        self.steps = 0
        self.finished = [None] * len(self.ids)

    def record(self, rewards: List[float], dones: List[bool], truncate: bool) -> None:
        self.steps += 1
        for index, (reward, done) in enumerate(zip(rewards, dones)):
            self.running[index] += float(reward)
            self.lengths[index] += 1
            if done or truncate:
                if self.finished[index] is None:
                    self.finished[index] = (self.running[index], self.lengths[index])
                self.running[index], self.lengths[index] = 0.0, 0

    @property
    def ended(self) -> bool:
        return all(result is not None for result in self.finished)

    def rewards(self) -> Dict[str, float]:
        return {agent: round(result[0], 4) for agent, result in zip(self.ids, self.finished)}

    def lengths_by_agent(self) -> Dict[str, int]:
        return {agent: result[1] for agent, result in zip(self.ids, self.finished)}


class Playback:
    def __init__(self, args: Namespace, writer: LineWriter, label: str):
        self.args = args
        self.writer = writer
        self.label = label
        self.stop = threading.Event()
        self.limiter = ActionLineLimiter()
        self.episode = 0
        self.episodes_done = 0
        self.env_path: Optional[str] = None
        self.show_window = args.show_window and not args.headless
        self.max_steps = args.max_steps if args.max_steps > 0 else None
        self.max_episodes = args.max_episodes if args.max_episodes > 0 else None

    # --- the run ---------------------------------------------------------------------------------

    def run(self, open_source: Callable[[], ActionSource], settings: Dict[str, Any]) -> int:
        try:
            self.env_path = validate_env_path(self.args.env_path) if self.args.env_path else None
            settings = {**settings, "env_path": self.env_path}
            self.writer.event("settings", message=self._settings_text(settings), **settings)
            if self.args.show_window and self.args.headless:
                self.writer.event(
                    "warning", message="both --show-window and --headless given: the window stays hidden"
                )
            source = open_source()
        except UserError as error:
            return self._fatal(error)
        except KeyboardInterrupt:
            self.writer.event("status", message=f"{self.label} stopped before it started")
            return 0
        if source.kind != "random":
            self.writer.event("status", message=f"Loaded {source.describe()}", source=source.kind)
        StopSignals(
            f"Stopping the {self.label.lower()}: closing the game (signal again to end it at once)",
            on_first=self.stop_soon,
        )
        try:
            code = self._attempts(source)
        except KeyboardInterrupt:  # a second signal: the games were ended by the handler
            stop_all_games()
            code = 0
        ending = "stopped" if self.stop.is_set() else "finished" if code == 0 else "exiting after an error"
        self.writer.event(
            "status",
            message=f"{self.label} {ending} after {self.episodes_done} episode(s)",
            episodes=self.episodes_done,
            exit_code=code,
        )
        return code

    def _settings_text(self, settings: Dict[str, Any]) -> str:
        game = self.env_path or f"the Godot editor on port {self.args.port}"
        return (
            f"{self.label} settings: mode {self.args.mode}, game {game}"
            f"{' (window shown)' if self.show_window else ''}, seed {self.args.seed}, "
            f"step delay {self.args.step_delay:g} s, restart delay {self.args.restart_delay:g} s, "
            f"auto-restart {'on' if self.args.auto_restart else 'off'}"
        )

    def _fatal(self, error: UserError) -> int:
        """A problem found before any game starts: an error event and one `ERROR:` line; exit code 1."""
        self.writer.event("error", message=str(error))
        print_error(error.what, error.how)
        return 1

    def _attempts(self, source: ActionSource) -> int:
        attempt = 0
        while True:
            attempt += 1
            outcome = self._attempt(source, attempt)
            if outcome == FINISHED or outcome == STOPPED or self.stop.is_set():
                return 0
            if outcome == FATAL or not self.args.auto_restart:
                return 1
            self.writer.event(
                "status",
                message=f"Restarting the {self.label.lower()} in {self.args.restart_delay:g} s "
                f"(attempt {attempt + 1})",
                attempt=attempt + 1,
            )
            if self.stop.wait(self.args.restart_delay):
                return 0

    def _attempt(self, source: ActionSource, attempt: int) -> str:
        game = None
        try:
            game = self._open_game(attempt)
            mode = resolve_mode(self.args.mode, game.agent_policy_names)
            ids = agent_ids(mode, game.num_envs)
            self._connected(game, attempt, mode, ids)
            policies = source.bind(game)
            self.writer.event(
                "status",
                message="Policies: " + listed(dict(zip(ids, policies))),
                policies=dict(zip(ids, policies)),
            )
            return self._play(game, source, mode, ids, policies)
        except StopRequested:
            return STOPPED
        except GameConnectError as error:
            self._report("warning", str(error))
            return FAILED
        except (GameError, PlaybackError) as error:
            self._report("error", str(error))
            return FAILED
        except UserError as error:  # e.g. the port is taken: restarting will not help
            self._report("error", str(error))
            return FATAL
        except Exception as error:
            if self.stop.is_set():
                return STOPPED
            self._report("error", f"{type(error).__name__}: {error}")
            return FAILED
        finally:
            if game is not None:
                game.close()

    def _open_game(self, attempt: int) -> RobustGodotEnv:
        args = self.args
        if self.env_path:
            self.writer.event(
                "status", message=f"Starting the game {self.env_path} on port {args.port} (attempt {attempt})"
            )
        else:
            self.writer.event(
                "status",
                message=f"Waiting for the Godot editor on port {args.port}: press Play (attempt {attempt})",
            )
        return RobustGodotEnv(game_settings(args, self.env_path))

    def _connected(self, game: RobustGodotEnv, attempt: int, mode: str, ids: List[str]) -> None:
        where = self.env_path or "the Godot editor"
        self.writer.event(
            "connected",
            message=f"Connected (attempt {attempt}, mode: {mode}): {game.num_envs} agent(s) of {where} "
            f"on port {self.args.port}",
            attempt=attempt,
            mode=mode,
            env_path=self.env_path,
            port=self.args.port,
            agents=game.num_envs,
            agent_ids=ids,
            agent_policy_names=list(game.agent_policy_names),
            observation_space=describe_game_observations(game),
            action_space=describe_space(game.action_spaces[0]),
        )

    def stop_soon(self) -> None:
        """Stop the run (the first SIGINT or SIGTERM, or the reader gone): every wait for a game gives up
        within a poll interval, and a game that has not quit CLOSE_GRACE_S later (one still starting, so
        it cannot be told to close, or a hung one) is killed. Safe in a signal handler."""
        if self.stop.is_set():
            return
        self.stop.set()
        request_stop()
        killer = threading.Timer(CLOSE_GRACE_S, stop_all_games)
        killer.daemon = True
        killer.start()

    def _report(self, kind: str, message: str) -> None:
        fields = {}
        if self.args.log_tracebacks:
            fields["traceback"] = traceback.format_exc()
            sys.stderr.write(fields["traceback"])
        self.writer.event(kind, message=message, **fields)

    # --- episodes --------------------------------------------------------------------------------

    def _play(
        self, game: RobustGodotEnv, source: ActionSource, mode: str, ids: List[str], policies: List[str]
    ) -> str:
        observations, _ = game.reset()
        tracker = EpisodeTracker(ids)
        while True:
            self.episode += 1
            tracker.start()
            self.writer.event(
                "episode_start", message=f"Episode {self.episode} started", episode=self.episode, mode=mode
            )
            truncate = False
            while not tracker.ended:
                if self.stop.is_set():
                    raise StopRequested()
                actions = source.act(observations)
                game.send_actions(actions)
                next_observations, rewards, dones, _, infos = game.step_recv()
                truncate = self.max_steps is not None and tracker.steps + 1 >= self.max_steps
                tracker.record(rewards, dones, truncate)
                forced = truncate or any(dones)  # a step where an episode ends is always written, in its turn
                if forced and self.stop.wait(self.limiter.wait_time()):
                    raise StopRequested()
                skipped = self.limiter.admit(forced)
                if skipped is not None:
                    step = zip(ids, policies, observations, actions, rewards, dones, infos)
                    self._write_step(mode, tracker.steps, step, truncate, skipped)
                observations = next_observations
                if self.args.step_delay > 0 and self.stop.wait(self.args.step_delay):
                    raise StopRequested()
            self._end_episode(tracker, mode, truncate)
            if self.max_episodes is not None and self.episodes_done >= self.max_episodes:
                return FINISHED
            if truncate:
                observations, _ = game.reset()

    def _write_step(self, mode: str, step: int, agents, truncate: bool, skipped: int) -> None:
        """One action line: a row per agent (`agents` yields agent, policy, observation, action, reward,
        done, info); `skipped_steps` when the rate limit skipped steps before it."""
        rows = [
            {
                "agent": agent,
                "policy": policy,
                "observation": compact_observation(observation),
                "action": compact_action(action),
                "reward": float(reward),
                "terminated": bool(done),
                "truncated": truncate and not done,
                "done": bool(done) or truncate,
                "info": info,
            }
            for agent, policy, observation, action, reward, done, info in agents
        ]
        payload = {"episode": self.episode, "step": step, "mode": mode, "agents": rows}
        self.writer.action({**payload, "skipped_steps": skipped} if skipped else payload)

    def _end_episode(self, tracker: EpisodeTracker, mode: str, truncated: bool) -> None:
        self.episodes_done += 1
        rewards = tracker.rewards()
        self.writer.event(
            "episode_end",
            message=f"Episode {self.episode} ended after {tracker.steps} steps"
            f"{' (step limit)' if truncated else ''}: "
            f"rewards {listed(rewards, '{:.2f}')}",
            episode=self.episode,
            steps=tracker.steps,
            mode=mode,
            truncated=truncated,
            rewards=rewards,
            lengths=tracker.lengths_by_agent(),
            reward_mean=round(sum(rewards.values()) / len(rewards), 4),
        )


def run_playback(
    args: Namespace,
    tab: str,
    label: str,
    open_source: Callable[[], ActionSource],
    settings: Dict[str, Any],
    stream: Optional[TextIO] = None,
) -> int:
    """Run a playback script: `tab` is the line prefix (SIM, INTERFACE), `label` names it in messages.
    Protocol lines go to `stream`, by default the real stdout (claimed: everything else goes to stderr)."""
    playback: Optional[Playback] = None

    def reader_gone() -> None:  # the controller quit without stopping the script: stop as on SIGINT
        if playback is not None:
            playback.stop_soon()

    writer = LineWriter(tab, stream if stream is not None else claim_stdout(), on_closed=reader_gone)
    playback = Playback(args, writer, label)
    code = playback.run(open_source, settings)
    if stream is None:
        # The script ends next. Without this, the interpreter's final garbage collections over torch's and
        # Ray's objects take about a second, too long for the controller's stop (games are closed already).
        gc.freeze()
    return code


def run_interface(
    args: Namespace, kind: str, open_model: Callable[[], ActionSource], path_help: str, **settings: Any
) -> int:
    """Run an interface script: an `.onnx` agent path plays with onnxruntime as the Godot plugin runs
    it (labelled `--policy` when given), any other through `open_model` (`kind` in the settings)."""
    onnx = args.agent_path.suffix == ".onnx"

    def open_source() -> ActionSource:
        require_agent_path(args.agent_path, path_help)
        if not onnx:
            return open_model()
        from godot_rl_cli.play.onnx_source import OnnxActions

        return OnnxActions(
            args.agent_path, label=getattr(args, "policy", None), deterministic=not args.stochastic
        )

    all_settings = interface_settings(args, "onnx" if onnx else kind, **settings)
    return run_playback(args, "INTERFACE", "Interface", open_source, all_settings)
