"""GAIL: a discriminator tells the expert's (observation, action) pairs from the policy's, and its judgement
is the reward PPO (the generator) maximises.

Ho & Ermon, "Generative Adversarial Imitation Learning" (2016), eq. 17: the discriminator D(s, a) is trained
by logistic regression to separate expert pairs from the policy's (here D is the probability that the pair is
the expert's, the convention of the `imitation` library). The paper's cost log(1 - D) is the reward
-log(1 - D) = softplus(logit), always positive; the shipped reward is the logit itself,

    r(s, a) = log D(s, a) - log(1 - D(s, a)),

(as AIRL, Fu et al. 2018, rewards its logit), positive where a pair looks expert-like and negative where it
does not, so the value of a state does not grow with the steps left in an episode the game ends on a time
limit (which the plugin does not tell apart from a terminal state). On BallChase without the game's reward it
learnt fastest of the forms tried: softplus, softplus with the return normalised, the logit normalised
(bench/results.md, "Learning from recorded demos", section 3).

Each PPO rollout collects steps rewarded by the current discriminator (`GailRewardVecEnv`); at the rollout's
end the discriminator takes `updates` minibatch steps on that rollout's pairs against as many expert pairs
(`DiscriminatorCallback`), and PPO then trains on the rollout. With `mode="add"` the game's reward is kept
and the discriminator's added to it.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper

from godot_rl_cli.demos.files import OBS_KEY, Demonstrations, DemoSpaces

# the model attribute holding the discriminator's weights and optimizer: SB3 saves it in the model's zip
# (every save: the phase's, checkpoints, the final and interrupted ones) and restores it on load, so a
# resumed GAIL goes on with the discriminator it had
SAVED_DISCRIMINATOR = "controller_gail_discriminator"


@dataclass(frozen=True)
class GailSettings:
    mode: str = "replace"
    updates: int = 16  # discriminator minibatch steps per rollout
    batch_size: int = 256  # half expert pairs, half the policy's
    learning_rate: float = 1e-3
    hidden: tuple = (64, 64)
    reward: str = "logit"  # "logit": log D - log(1 - D); "softplus": -log(1 - D) (the paper's cost)
    seed: int = 0


class Discriminator(torch.nn.Module):
    """An MLP on the observation and the action (one-hot per discrete head, the values of continuous heads)
    giving the logit of "this pair is the expert's"."""

    def __init__(self, spaces: DemoSpaces, hidden: tuple = (64, 64)):
        super().__init__()
        self.spaces = spaces
        action_size = sum(head.size for head in spaces.heads)
        layers: List[torch.nn.Module] = []
        size = spaces.obs_size + action_size
        for width in hidden:
            layers += [torch.nn.Linear(size, width), torch.nn.Tanh()]
            size = width
        layers.append(torch.nn.Linear(size, 1))
        self.net = torch.nn.Sequential(*layers)

    def encode_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Flat actions (indices for discrete heads) as the network's input."""
        if not self.spaces.discrete:
            return actions.float().reshape(len(actions), -1).clamp(-1.0, 1.0)
        columns = actions.long().reshape(len(actions), -1)
        return torch.cat(
            [
                torch.nn.functional.one_hot(columns[:, index], head.size).float()
                for index, head in enumerate(self.spaces.heads)
            ],
            dim=1,
        )

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs.float().reshape(len(obs), -1), self.encode_actions(actions)], dim=1))[
            :, 0
        ]

    def reward(self, obs: np.ndarray, actions: np.ndarray, form: str = "logit") -> np.ndarray:
        """The generator's reward for each pair: softplus(logit) = -log(1 - D), or the logit itself,
        log D - log(1 - D)."""
        with torch.no_grad():
            logits = self(torch.as_tensor(obs), torch.as_tensor(np.asarray(actions)))
        rewards = torch.nn.functional.softplus(logits) if form == "softplus" else logits
        return rewards.numpy().astype(np.float32)


class DiscriminatorTrainer:
    """Logistic regression of expert pairs (label 1) against the policy's (label 0)."""

    def __init__(self, demos: Demonstrations, settings: GailSettings):
        torch.manual_seed(settings.seed)
        self.demos = demos
        self.settings = settings
        self.discriminator = Discriminator(demos.spaces, settings.hidden)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=settings.learning_rate)
        self.rng = np.random.default_rng(settings.seed)
        self.latest: Dict[str, float] = {}

    def state_dict(self) -> Dict[str, Dict]:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Dict[str, Dict]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer.load_state_dict(state["optimizer"])

    def train(self, policy_obs: np.ndarray, policy_actions: np.ndarray) -> Dict[str, float]:
        """`updates` balanced minibatch steps; returns the mean loss and accuracies of these steps."""
        loss_fn = torch.nn.functional.binary_cross_entropy_with_logits
        sums = np.zeros(4)
        half = self.settings.batch_size // 2
        for _ in range(self.settings.updates):
            expert = self.rng.integers(len(self.demos.observations), size=half)
            generated = self.rng.integers(len(policy_obs), size=half)
            expert_logits = self.discriminator(
                torch.as_tensor(self.demos.observations[expert]), torch.as_tensor(self.demos.actions[expert])
            )
            policy_logits = self.discriminator(
                torch.as_tensor(policy_obs[generated]), torch.as_tensor(policy_actions[generated])
            )
            loss = loss_fn(expert_logits, torch.ones_like(expert_logits)) + loss_fn(
                policy_logits, torch.zeros_like(policy_logits)
            )
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            expert_right = (expert_logits > 0).float().mean().item()
            policy_right = (policy_logits < 0).float().mean().item()
            expert_probability = torch.sigmoid(policy_logits).mean().item()
            sums += [loss.item() / 2, (expert_right + policy_right) / 2, expert_right, expert_probability]
        loss, accuracy, expert_accuracy, policy_as_expert = sums / self.settings.updates
        self.latest = {
            "discriminator_loss": loss,
            "discriminator_accuracy": accuracy,
            "discriminator_expert_accuracy": expert_accuracy,
            "discriminator_policy_as_expert": policy_as_expert,
        }
        return self.latest


class GailRewardVecEnv(VecEnvWrapper):
    """Replaces (or adds to) each step's reward with the discriminator's reward for the observation the
    action was chosen on and the action. Wrap it around the VecMonitor, so the episode returns reported are
    still the game's."""

    def __init__(self, venv: VecEnv, trainer: DiscriminatorTrainer, mode: str = "replace"):
        super().__init__(venv)
        self.trainer = trainer
        self.mode = mode
        self.last_obs: Optional[np.ndarray] = None
        self.actions: Optional[np.ndarray] = None
        self.reward_sum = 0.0
        self.reward_count = 0

    def reset(self):
        obs = self.venv.reset()
        self.last_obs = np.asarray(obs[OBS_KEY])
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self.actions = np.asarray(actions)
        self.venv.step_async(actions)

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        form = self.trainer.settings.reward
        gail_rewards = self.trainer.discriminator.reward(self.last_obs, self.actions, form)
        self.reward_sum += float(gail_rewards.sum())
        self.reward_count += len(gail_rewards)
        rewards = gail_rewards if self.mode == "replace" else rewards + gail_rewards
        self.last_obs = np.asarray(obs[OBS_KEY])
        return obs, rewards, dones, infos

    def take_reward_mean(self) -> Optional[float]:
        """The mean discriminator reward since the last call."""
        mean = self.reward_sum / self.reward_count if self.reward_count else None
        self.reward_sum, self.reward_count = 0.0, 0
        return mean


class DiscriminatorCallback(BaseCallback):
    """Trains the discriminator on each finished rollout of the generator (PPO's rollout buffer)."""

    def __init__(self, trainer: DiscriminatorTrainer, rewards: GailRewardVecEnv):
        super().__init__()
        self.trainer = trainer
        self.rewards = rewards
        self.fields: Dict[str, float] = {}

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        obs = buffer.observations[OBS_KEY].reshape(-1, self.trainer.demos.spaces.obs_size)
        actions = buffer.actions.reshape(len(obs), -1)
        if self.trainer.demos.spaces.discrete and actions.shape[1] == 1:
            actions = actions[:, 0]
        stats = self.trainer.train(obs, actions)
        setattr(self.model, SAVED_DISCRIMINATOR, self.trainer.state_dict())
        reward_mean = self.rewards.take_reward_mean()
        self.fields = {**stats, **({"gail_reward_mean": reward_mean} if reward_mean is not None else {})}
        line = ", ".join(f"{key} {value:.3f}" for key, value in self.fields.items())
        print(f"GAIL discriminator | {line}", flush=True)

    def take_fields(self) -> Dict[str, float]:
        """The latest numbers, for the iteration's metric line."""
        return dict(self.fields)
