"""Example games that behave like exported Godot games using the Godot RL Agents plugin (0.7).

Pure standard library, so any `python3` runs them. A launcher `<Game>.x86_64` is an executable
that godot-rl starts exactly as it starts an exported game; the game connects to the trainer on
127.0.0.1 and speaks the plugin's wire protocol: a 4-byte little-endian byte count, then UTF-8
JSON. Physics runs as fast as possible, as a Godot game started with `--fixed-fps`; with
`--realtime=1` it is paced like a Godot game without it (60 ticks/s times `--speedup`).

Fault injection for tests, as extra `--key=value` arguments: `crash_after_steps`,
`hang_after_steps`, `never_connect`, `bad_json_after_steps`, `nan_reward_after_steps`,
`step_cost_ms` (busy wait per physics tick), and `fault=<kind>` with `fault_after_steps=N`
for the protocol faults listed in `FAULTS`. With `fault_seed=S` the faults apply only to the
game started with `--env_seed=S` (one of several parallel games).

Episode lengths for tests (BallChase): `max_steps=N` (default 100) steps per episode, and `stagger=K`:
agent i's episodes last N + K * i steps, so agents finish at different steps.

Reward control for tests: `reward_trend=T` adds T times the number of episodes this game has finished so
far to every step's reward (T > 0: later episodes score higher whatever the policy; T < 0: lower).
`zero_reward=1` makes every reward 0 (learning from demos without the game's reward: GAIL).

Expert demos: `--record_demos=PATH --demo_episodes=N` plays N episodes with the game's scripted expert,
without a trainer (as a person plays a game in the editor with an AIController in "Record Expert Demos"
mode), writes agent 0's episodes to PATH in the plugin's exact layout and exits (see `record_demos`).
`flat_reward=R` makes every step's reward R whatever the policy (a run that cannot learn; `off`: no effect).
"""

import json
import math
import random
import socket
import struct
import sys
import time
from typing import Any, Callable, Dict, List, Optional

PHYSICS_DT = 1.0 / 60.0
DEFAULT_ACTION_REPEAT = 8
CONNECT_RETRY_S = 10.0


def parse_godot_args(argv: List[str]) -> Dict[str, str]:
    """Parse the command line the way the plugin reads `OS.get_cmdline_args()`: `--key=value` and flags."""
    args: Dict[str, str] = {}
    index = 0
    while index < len(argv):
        token = argv[index]
        if token == "--fixed-fps" and index + 1 < len(argv):
            args["fixed-fps"] = argv[index + 1]
            index += 1
        elif token.startswith("--") and "=" in token:
            key, value = token[2:].split("=", 1)
            args[key] = value
        elif token.startswith("--"):
            args[token[2:]] = "true"
        index += 1
    return args


# --- games ---------------------------------------------------------------------------------------


class BallChase:
    """Agents chase a target in the square [-1, 1]^2. Reward: progress towards it, +1 on reaching it."""

    MAX_STEPS = 100
    SPEED = 1.5
    REACH_DISTANCE = 0.15

    def __init__(
        self,
        rng: random.Random,
        n_agents: int,
        discrete: bool,
        camera_size: int = 0,
        max_steps: int = MAX_STEPS,
        stagger: int = 0,
    ):
        self.rng = rng
        self.n_agents = n_agents
        self.episode_steps = [max_steps + stagger * index for index in range(n_agents)]
        self.discrete = discrete
        self.camera_size = camera_size
        self.agents = [self._new_agent() for _ in range(n_agents)]

    def policy_names(self) -> List[str]:
        return ["shared_policy"] * self.n_agents

    def observation_space(self) -> Dict[str, Any]:
        space = {"obs": {"size": [4], "space": "box"}}
        if self.camera_size:
            space["camera_2d"] = {"size": [self.camera_size, self.camera_size, 1], "space": "box"}
        return space

    def action_space(self) -> Dict[str, Any]:
        if self.discrete:
            return {"move": {"size": 5, "action_type": "discrete"}}
        return {"move": {"size": 2, "action_type": "continuous"}}

    def _new_agent(self) -> Dict[str, Any]:
        agent = {"pos": [self.rng.uniform(-1, 1), self.rng.uniform(-1, 1)], "steps": 0, "reached": 0}
        agent["target"] = self._new_target()
        agent["distance"] = self._distance(agent)
        agent.update(reward=0.0, done=False, needs_reset=False, move=(0.0, 0.0))
        return agent

    def _new_target(self) -> List[float]:
        return [self.rng.uniform(-0.9, 0.9), self.rng.uniform(-0.9, 0.9)]

    @staticmethod
    def _distance(agent: Dict[str, Any]) -> float:
        return math.hypot(agent["target"][0] - agent["pos"][0], agent["target"][1] - agent["pos"][1])

    def reset_all(self) -> None:
        self.agents = [self._new_agent() for _ in range(self.n_agents)]

    def set_action(self, index: int, action: Dict[str, Any]) -> None:
        move = action["move"]
        if self.discrete:
            move = [(0.0, 0.0), (0.0, 1.0), (0.0, -1.0), (-1.0, 0.0), (1.0, 0.0)][int(move)]
        self.agents[index]["move"] = (
            max(-1.0, min(1.0, float(move[0]))),
            max(-1.0, min(1.0, float(move[1]))),
        )

    def physics_tick(self) -> None:
        for index, agent in enumerate(self.agents):
            if agent["needs_reset"]:
                self.agents[index] = self._new_agent()
                continue
            agent["pos"] = [
                max(-1.0, min(1.0, agent["pos"][axis] + agent["move"][axis] * self.SPEED * PHYSICS_DT))
                for axis in (0, 1)
            ]
            distance = self._distance(agent)
            agent["reward"] += (agent["distance"] - distance) * 2.0
            agent["distance"] = distance
            if distance < self.REACH_DISTANCE:
                agent["reward"] += 1.0
                agent["reached"] += 1
                agent["target"] = self._new_target()
                agent["distance"] = self._distance(agent)

    def end_step(self) -> None:
        for agent, episode_steps in zip(self.agents, self.episode_steps, strict=True):
            agent["steps"] += 1
            if agent["steps"] >= episode_steps:
                agent["done"] = True
                agent["needs_reset"] = True

    def observation(self, index: int) -> Dict[str, Any]:
        agent = self.agents[index]
        dx = agent["target"][0] - agent["pos"][0]
        dy = agent["target"][1] - agent["pos"][1]
        obs: Dict[str, Any] = {"obs": [dx / 2.0, dy / 2.0, agent["pos"][0], agent["pos"][1]]}
        if self.camera_size:
            obs["camera_2d"] = self._render(agent).hex()
        return obs

    def _render(self, agent: Dict[str, Any]) -> bytes:
        size = self.camera_size
        image = bytearray(size * size)
        for point, shade in ((agent["target"], 255), (agent["pos"], 128)):
            column = min(size - 1, int((point[0] + 1.0) / 2.0 * size))
            row = min(size - 1, int((1.0 - point[1]) / 2.0 * size))
            image[row * size + column] = shade
        return bytes(image)

    def info(self, index: int) -> Dict[str, Any]:
        agent = self.agents[index]
        return {"distance": round(agent["distance"], 6), "targets_reached": agent["reached"]}

    def take_reward_and_done(self, index: int) -> tuple:
        agent = self.agents[index]
        reward, done = agent["reward"], agent["done"]
        agent["reward"], agent["done"] = 0.0, False
        return reward, done


class Pong:
    """Two paddles (left_policy, right_policy) keep a ball in play. +0.5 per hit, -1 per miss."""

    MAX_STEPS = 300
    MAX_MISSES = 5
    PADDLE_HALF = 0.25
    PADDLE_SPEED = 1.5

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.n_agents = 2
        self.reset_all()

    def policy_names(self) -> List[str]:
        return ["left_policy", "right_policy"]

    def observation_space(self) -> Dict[str, Any]:
        return {"obs": {"size": [6], "space": "box"}}

    def action_space(self) -> Dict[str, Any]:
        return {"move": {"size": 3, "action_type": "discrete"}}

    def reset_all(self) -> None:
        self.paddles = [0.0, 0.0]
        self.moves = [0, 0]
        self.rewards = [0.0, 0.0]
        self.hits = [0, 0]
        self.misses = [0, 0]
        self.steps = 0
        self.done = False
        self.needs_reset = False
        self._serve()

    def _serve(self) -> None:
        self.ball = [0.0, self.rng.uniform(-0.5, 0.5)]
        self.velocity = [self.rng.choice([-1.0, 1.0]) * 0.8, self.rng.uniform(-0.6, 0.6)]

    def set_action(self, index: int, action: Dict[str, Any]) -> None:
        self.moves[index] = [0, 1, -1][int(action["move"])]

    def physics_tick(self) -> None:
        if self.needs_reset:
            self.reset_all()
            return
        for side in (0, 1):
            paddle = self.paddles[side] + self.moves[side] * self.PADDLE_SPEED * PHYSICS_DT
            self.paddles[side] = max(-1.0, min(1.0, paddle))
        self.ball = [self.ball[axis] + self.velocity[axis] * PHYSICS_DT for axis in (0, 1)]
        if abs(self.ball[1]) > 1.0:
            self.velocity[1] = -self.velocity[1]
            self.ball[1] = max(-1.0, min(1.0, self.ball[1]))
        side = 0 if self.ball[0] < -1.0 else 1 if self.ball[0] > 1.0 else None
        if side is None:
            return
        if abs(self.ball[1] - self.paddles[side]) <= self.PADDLE_HALF:
            self.hits[side] += 1
            self.rewards[side] += 0.5
            self.velocity[0] = -self.velocity[0] * 1.05
            self.ball[0] = max(-1.0, min(1.0, self.ball[0]))
        else:
            self.misses[side] += 1
            self.rewards[side] -= 1.0
            self._serve()

    def end_step(self) -> None:
        self.steps += 1
        if self.steps >= self.MAX_STEPS or sum(self.misses) >= self.MAX_MISSES:
            self.done = True
            self.needs_reset = True

    def observation(self, index: int) -> Dict[str, Any]:
        mirror = -1.0 if index == 0 else 1.0
        own, other = self.paddles[index], self.paddles[1 - index]
        return {
            "obs": [
                self.ball[0] * mirror,
                self.ball[1],
                self.velocity[0] * mirror,
                self.velocity[1],
                own,
                other,
            ]
        }

    def info(self, index: int) -> Dict[str, Any]:
        return {"hits": self.hits[index], "misses": self.misses[index]}

    def take_reward_and_done(self, index: int) -> tuple:
        reward = self.rewards[index]
        self.rewards[index] = 0.0
        done = self.done
        if index == self.n_agents - 1:
            self.done = False
        return reward, done


class PongDuel(Pong):
    """Zero-sum Pong for self-play: a miss scores +1 for the other side and -1 for the side that missed; the
    episode ends when a side has `points` points (default 3) or after MAX_STEPS steps. Agents: left_policy and
    right_policy (each sees the court mirrored so that its own paddle is on the right). With
    `opponent=scripted` (skill `opponent_skill`, default 0.7: the share of balls it goes for) or
    `opponent=random` the game moves the right paddle itself and only left_policy's agent is exposed."""

    OPPONENTS = ("agent", "scripted", "random")

    def __init__(self, rng: random.Random, args: Dict[str, str]):
        self.opponent = args.get("opponent", "agent")
        if self.opponent not in self.OPPONENTS:
            raise SystemExit(f"unknown opponent {self.opponent!r}; choose from {', '.join(self.OPPONENTS)}")
        self.skill = float(args.get("opponent_skill", "0.7"))
        self.points_to_win = int(args.get("points", "3"))
        self.opponent_rng = random.Random(rng.random())
        self.tracking = True
        super().__init__(rng)
        self.n_agents = 2 if self.opponent == "agent" else 1

    def policy_names(self) -> List[str]:
        return super().policy_names()[: self.n_agents]

    def reset_all(self) -> None:
        super().reset_all()
        self.points = [0, 0]
        self.outcome = [0, 0]

    def _serve(self) -> None:
        super()._serve()
        self._decide_tracking()

    def _decide_tracking(self) -> None:
        self.tracking = self.opponent_rng.random() < self.skill

    def _scripted_move(self) -> int:
        if self.opponent == "random" or (self.velocity[0] > 0 and not self.tracking):
            return self.opponent_rng.choice([-1, 0, 1])
        target = self.ball[1] if self.velocity[0] > 0 else 0.0
        gap = target - self.paddles[1]
        return 0 if abs(gap) < 0.05 else (1 if gap > 0 else -1)

    def physics_tick(self) -> None:
        if self.n_agents == 1 and not self.needs_reset:
            self.moves[1] = self._scripted_move()
        hits, misses, incoming = list(self.hits), list(self.misses), self.velocity[0] > 0
        super().physics_tick()
        if (
            self.velocity[0] > 0 and not incoming
        ):  # returned by the left paddle: the scripted side decides again
            self._decide_tracking()
        for side in (0, 1):
            self.rewards[side] -= 0.5 * (self.hits[side] - hits[side])  # no reward for a hit: zero-sum
            if self.misses[side] > misses[side]:  # Pong took 1 from the side that missed; +1 to the other
                self.points[1 - side] += 1
                self.rewards[1 - side] += 1.0

    def end_step(self) -> None:
        self.steps += 1
        if self.steps >= self.MAX_STEPS or max(self.points) >= self.points_to_win:
            difference = self.points[0] - self.points[1]
            self.outcome = [(difference > 0) - (difference < 0), (difference < 0) - (difference > 0)]
            self.done = True
            self.needs_reset = True

    def info(self, index: int) -> Dict[str, Any]:
        return {
            "hits": self.hits[index],
            "points": self.points[index],
            "opponent_points": self.points[1 - index],
            "won": self.outcome[index],  # at the episode's end: 1 won, 0 draw, -1 lost
        }


def make_game(name: str, rng: random.Random, args: Dict[str, str]):
    n_agents = int(args.get("n_agents", "1"))
    lengths = {
        "max_steps": int(args.get("max_steps", BallChase.MAX_STEPS)),
        "stagger": int(args.get("stagger", 0)),
    }
    if name == "BallChase":
        return BallChase(rng, n_agents, discrete=False, **lengths)
    if name == "BallChaseDiscrete":
        return BallChase(rng, n_agents, discrete=True, **lengths)
    if name == "BallChaseCamera":
        camera_size = int(args.get("camera_size", "36"))
        return BallChase(rng, n_agents, discrete=False, camera_size=camera_size, **lengths)
    if name == "Pong":
        return Pong(rng)
    if name == "PongDuel":
        return PongDuel(rng, args)
    raise SystemExit(f"unknown game {name}")


# --- scripted experts and the demo recorder ------------------------------------------------------


def ball_chase_expert(game: BallChase, index: int) -> Dict[str, Any]:
    """Straight at the target: the unit direction (continuous), the move along the longer axis (discrete)."""
    agent = game.agents[index]
    dx, dy = agent["target"][0] - agent["pos"][0], agent["target"][1] - agent["pos"][1]
    if game.discrete:
        if abs(dx) >= abs(dy):
            return {"move": 4 if dx > 0 else 3}
        return {"move": 1 if dy > 0 else 2}
    length = math.hypot(dx, dy) or 1.0
    return {"move": [dx / length, dy / length]}


def pong_expert(game: Pong, index: int) -> Dict[str, Any]:
    """Keep the paddle level with the ball: up (1), down (2) or stay (0)."""
    offset = game.ball[1] - game.paddles[index]
    if abs(offset) < 0.05:
        return {"move": 0}
    return {"move": 1 if offset > 0 else 2}


def expert_action(game: Any, index: int) -> Dict[str, Any]:
    return pong_expert(game, index) if isinstance(game, Pong) else ball_chase_expert(game, index)


def recorded_action(game: Any, action: Dict[str, Any]) -> List[Any]:
    """What an AIController's get_action() returns: one flat array, the heads' values (heads by name)."""
    values: List[Any] = []
    for name in sorted(game.action_space()):
        value = action[name]
        values += value if isinstance(value, list) else [value]
    return values


class ZeroReward:
    """The game with every reward 0 (`zero_reward=1`): learning from demos without the game's reward."""

    def __init__(self, game: Any):
        self.game = game

    def __getattr__(self, name: str) -> Any:
        return getattr(self.game, name)

    def take_reward_and_done(self, index: int) -> tuple:
        _, done = self.game.take_reward_and_done(index)
        return 0.0, done


def record_demos(game: Any, args: Dict[str, str]) -> None:
    """Play `demo_episodes` episodes with the expert (every agent) and write agent 0's as the plugin does:
    a JSON array of [observations, actions] per episode, the terminal observation without an action,
    compact JSON on one line. Prints the recorded episodes' mean return (which the file does not hold)."""
    runner = Runner(game, args)
    episodes: List[List[List[Any]]] = []
    returns: List[float] = []
    observations: List[Any] = []
    actions: List[Any] = []
    episode_return = 0.0
    game.reset_all()
    while len(episodes) < int(args.get("demo_episodes", "10")):
        expert = [expert_action(game, index) for index in range(game.n_agents)]
        observations.append(game.observation(0)["obs"])
        actions.append(recorded_action(game, expert[0]))
        reply = runner.step(expert)
        episode_return += reply["reward"][0]
        if reply["done"][0]:
            observations.append(reply["obs"][0]["obs"])
            episodes.append([observations, actions])
            returns.append(episode_return)
            observations, actions, episode_return = [], [], 0.0
            game.physics_tick()  # the game resets the finished agent, as before the next decision
    with open(args["record_demos"], "w") as file:
        file.write(json.dumps(episodes, separators=(",", ":")) + "\n")
    print(
        f"recorded {len(episodes)} expert episodes ({sum(len(item[1]) for item in episodes)} steps) to "
        f"{args['record_demos']}; mean return {sum(returns) / len(returns):.4f}",
        file=sys.stderr,
        flush=True,
    )


# --- connection --------------------------------------------------------------------------------


class TrainerGone(Exception):
    """The trainer closed the connection: the game quits, as the plugin does."""


class Connection:
    def __init__(self, port: int):
        deadline = time.monotonic() + CONNECT_RETRY_S
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=5.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_raw(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            raise TrainerGone() from None

    def send(self, message: Dict[str, Any]) -> None:
        body = json.dumps(message).encode("utf-8")
        self.send_raw(struct.pack("<I", len(body)) + body)

    def _recv_exactly(self, size: int) -> bytes:
        data = bytearray()
        while len(data) < size:
            try:
                chunk = self.sock.recv(size - len(data))
            except OSError:
                chunk = b""
            if not chunk:
                raise TrainerGone()
            data.extend(chunk)
        return bytes(data)

    def receive(self) -> Dict[str, Any]:
        size = struct.unpack("<I", self._recv_exactly(4))[0]
        return json.loads(self._recv_exactly(size).decode("utf-8"))


# --- faults --------------------------------------------------------------------------------------


def _send_truncated(conn: Connection, reply: Dict[str, Any]) -> None:
    body = json.dumps(reply).encode()
    conn.send_raw(struct.pack("<I", len(body)) + body[: len(body) // 2])
    time.sleep(0.2)
    raise SystemExit(0)


def _send_oversized(conn: Connection, reply: Dict[str, Any]) -> None:
    conn.send_raw(struct.pack("<I", 0xFFFFFFF0) + b"{}")
    time.sleep(3600)


def _send_wrong_type(conn: Connection, reply: Dict[str, Any]) -> None:
    conn.send({**reply, "type": "reset"})


def _send_missing_fields(conn: Connection, reply: Dict[str, Any]) -> None:
    conn.send({"type": "step", "obs": reply["obs"]})


def _send_wrong_shape(conn: Connection, reply: Dict[str, Any]) -> None:
    conn.send({**reply, "reward": reply["reward"] + [0.0], "obs": reply["obs"][:-1] or [{}]})


def _send_bad_info(conn: Connection, reply: Dict[str, Any]) -> None:
    conn.send({**reply, "info": ["not an object" for _ in reply["info"]]})


def _send_non_ascii(conn: Connection, reply: Dict[str, Any]) -> None:
    """Valid: the plugin may send any UTF-8 text; a byte-counting trainer must accept it."""
    info = [{**item, "label": "Überraschung ✓ 日本"} for item in reply["info"]]
    conn.send({**reply, "info": info})


def _send_garbage(conn: Connection, reply: Dict[str, Any]) -> None:
    rng = random.Random(7)
    garbage = b"\xff\xfe" + bytes(rng.getrandbits(8) for _ in range(62))
    conn.send_raw(struct.pack("<I", len(garbage)) + garbage)


def _send_twice(conn: Connection, reply: Dict[str, Any]) -> None:
    body = json.dumps(reply).encode()
    conn.send_raw((struct.pack("<I", len(body)) + body) * 2)


def _send_not_object(conn: Connection, reply: Dict[str, Any]) -> None:
    body = json.dumps([reply]).encode()
    conn.send_raw(struct.pack("<I", len(body)) + body)


FAULTS: Dict[str, Callable[[Connection, Dict[str, Any]], None]] = {
    "truncated": _send_truncated,
    "oversized": _send_oversized,
    "wrong_type": _send_wrong_type,
    "missing_fields": _send_missing_fields,
    "wrong_shape": _send_wrong_shape,
    "bad_info": _send_bad_info,
    "non_ascii": _send_non_ascii,
    "garbage": _send_garbage,
    "out_of_order": _send_twice,
    "not_object": _send_not_object,
}


# --- main loop -----------------------------------------------------------------------------------


class Runner:
    """The plugin's sync node: answers the trainer's messages and steps the game's physics."""

    def __init__(self, game, args: Dict[str, str]):
        self.game = game
        self.args = args
        self.action_repeat = int(args.get("action_repeat", DEFAULT_ACTION_REPEAT))
        self.speedup = float(args.get("speedup", "1"))
        self.realtime = args.get("realtime") == "1"
        self.step_cost_s = float(args.get("step_cost_ms", "0")) / 1000.0
        self.reward_trend = float(args.get("reward_trend", "0"))
        flat = args.get("flat_reward", "off")
        self.flat_reward = None if flat == "off" else float(flat)
        self.episodes_finished = 0
        self.steps = 0

    def _after(self, key: str) -> Optional[int]:
        return int(self.args[key]) if key in self.args else None

    def _physics_tick(self) -> None:
        started = time.perf_counter()
        self.game.physics_tick()
        if self.step_cost_s:
            while time.perf_counter() - started < self.step_cost_s:
                pass
        if self.realtime:
            time.sleep(max(0.0, PHYSICS_DT / self.speedup - (time.perf_counter() - started)))

    def env_info(self) -> Dict[str, Any]:
        n = self.game.n_agents
        return {
            "type": "env_info",
            "observation_space": [self.game.observation_space() for _ in range(n)],
            "action_space": [self.game.action_space() for _ in range(n)],
            "n_agents": n,
            "agent_policy_names": self.game.policy_names(),
        }

    def step(self, actions: List[Dict[str, Any]]) -> Dict[str, Any]:
        for index, action in enumerate(actions):
            self.game.set_action(index, action)
        for _ in range(self.action_repeat):
            self._physics_tick()
        self.game.end_step()
        n = self.game.n_agents
        rewards, dones = zip(*(self.game.take_reward_and_done(index) for index in range(n)), strict=False)
        reward_list = [float(reward) + self.reward_trend * self.episodes_finished for reward in rewards]
        self.episodes_finished += sum(1 for done in dones if done)
        if self.flat_reward is not None:
            reward_list = [self.flat_reward] * n
        nan_after = self._after("nan_reward_after_steps")
        if nan_after is not None and self.steps > nan_after:
            reward_list[0] = float("nan")
        return {
            "type": "step",
            "obs": [self.game.observation(index) for index in range(n)],
            "reward": reward_list,
            "done": list(dones),
            "info": [self.game.info(index) for index in range(n)],
        }

    def handle_action(self, conn: Connection, message: Dict[str, Any]) -> None:
        self.steps += 1
        crash_after = self._after("crash_after_steps")
        if crash_after is not None and self.steps > crash_after:
            print(f"ERROR: simulated engine crash after {crash_after} steps", file=sys.stderr, flush=True)
            raise SystemExit(3)
        hang_after = self._after("hang_after_steps")
        if hang_after is not None and self.steps > hang_after:
            print(f"simulated hang after {hang_after} steps", file=sys.stderr, flush=True)
            while True:
                time.sleep(3600)
        reply = self.step(message["action"])
        bad_json_after = self._after("bad_json_after_steps")
        if bad_json_after is not None and self.steps > bad_json_after:
            conn.send_raw(struct.pack("<I", 13) + b'{"type": step')
            return
        fault_after = self._after("fault_after_steps")
        if "fault" in self.args and self.steps > (fault_after or 0):
            FAULTS[self.args["fault"]](conn, reply)
            return
        conn.send(reply)

    def serve(self, conn: Connection) -> None:
        while True:
            message = conn.receive()
            kind = message.get("type")
            if kind == "handshake":
                continue
            if kind == "env_info":
                conn.send(self.env_info())
            elif kind == "reset":
                self.game.reset_all()
                conn.send(
                    {"type": "reset", "obs": [self.game.observation(i) for i in range(self.game.n_agents)]}
                )
            elif kind == "action":
                self.handle_action(conn, message)
            elif kind == "call":
                method = message.get("method")
                returns = [
                    self.game.info(i) if method == "get_info" else None for i in range(self.game.n_agents)
                ]
                conn.send({"type": "call", "returns": returns})
            elif kind == "close":
                return
            else:
                print(f"unknown message type {kind!r}", file=sys.stderr, flush=True)


FAULT_KEYS = (
    "crash_after_steps",
    "hang_after_steps",
    "never_connect",
    "bad_json_after_steps",
    "nan_reward_after_steps",
    "fault",
)


def main(game_name: str) -> None:
    args = parse_godot_args(sys.argv[1:])
    if "fault_seed" in args and args["fault_seed"] != args.get("env_seed", "0"):
        args = {key: value for key, value in args.items() if key not in FAULT_KEYS}
    unknown = [key for key in ("fault",) if key in args and args[key] not in FAULTS]
    if unknown:
        raise SystemExit(f"unknown fault {args['fault']!r}; choose from {sorted(FAULTS)}")
    seed = int(args.get("env_seed", "0"))
    port = int(args.get("port", "11008"))
    print(
        f"{game_name} (Godot RL example game, simulated) seed={seed} port={port}", file=sys.stderr, flush=True
    )
    if args.get("never_connect") == "1":
        while True:
            time.sleep(3600)
    game = make_game(game_name, random.Random(seed), args)
    if args.get("zero_reward") == "1":
        game = ZeroReward(game)
    if "record_demos" in args:
        record_demos(game, args)
        return
    try:
        conn = Connection(port)
    except OSError as error:
        print(f"ERROR: could not connect to the trainer on port {port}: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    try:
        Runner(game, args).serve(conn)
    except TrainerGone:
        print("trainer closed the connection, quitting", file=sys.stderr, flush=True)
    finally:
        conn.sock.close()
