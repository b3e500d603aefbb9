"""Evaluation during SB3 training: deterministic episodes on a game of its own, the best model kept.

Built on SB3's `EvalCallback` (its episode loop, `evaluations.npz`, best-reward tracking). What is added:
the evaluation game is one more `GodotVecEnv` game on the port after the training games (so a crash or hang
is relaunched like a training game's), the best model is saved atomically with its manifest and, when an
ONNX path is set, exported to `best.onnx` and verified, and each evaluation's numbers go into the iteration's
`@METRIC` line.
"""

import argparse
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
from stable_baselines3.common.vec_env import VecEnv

from godot_rl_cli import manifest
from godot_rl_cli.errors import UserError, print_warning
from godot_rl_cli.game.process import raise_if_stop_requested
from godot_rl_cli.onnx.recipe import VerificationError
from godot_rl_cli.onnx.sb3 import export_sb3_model
from godot_rl_cli.sb3.callbacks import save_model_atomically
from godot_rl_cli.sb3.outputs import BEST_MODEL, best_onnx_path


@dataclass
class Best:
    """The best evaluation so far and the files it left."""

    iteration: int
    timesteps: int
    reward_mean: float
    files: tuple


class SaveBestModel(BaseCallback):
    """Called by EvalCallback on a new best mean reward: saves `best_model.zip` atomically, its manifest and,
    when `export` is given, `best.onnx` (an export failure is a warning: training goes on)."""

    def __init__(
        self,
        directory: Path,
        iteration: Callable[[], int],
        write_manifest: Callable[..., None],
        export: Optional[Callable[[Any, Path], Any]] = None,
        onnx_path: Optional[Path] = None,
    ):
        super().__init__()
        self.path = Path(directory) / BEST_MODEL
        self.iteration = iteration
        self.write_manifest = write_manifest
        self.export = export
        self.onnx_path = onnx_path
        self.best: Optional[Best] = None

    def _on_step(self) -> bool:
        evaluation = self.parent
        save_model_atomically(self.model, self.path)
        details = {
            "iteration": self.iteration(),
            "timesteps": self.model.num_timesteps,
            "eval_reward_mean": evaluation.best_mean_reward,
            "eval_episodes": evaluation.n_eval_episodes,
        }
        self.write_manifest(self.model, self.path, best_evaluation=details)
        files = [self.path]
        if self.export is not None:
            try:
                self.export(self.model, self.onnx_path)
                files.append(self.onnx_path)
            except (UserError, VerificationError, OSError, RuntimeError, ValueError) as error:
                print_warning(f"exporting the best model to {self.onnx_path} failed: {error}")
        self.best = Best(
            details["iteration"], details["timesteps"], evaluation.best_mean_reward, tuple(files)
        )
        print(
            f"New best evaluation reward {evaluation.best_mean_reward:.3f} at iteration "
            f"{self.best.iteration}: saved {', '.join(str(path) for path in files)}",
            flush=True,
        )
        return True


class GodotEvalCallback(EvalCallback):
    """SB3's EvalCallback every `eval_freq` env steps (counted over all training envs), deterministic, with
    the numbers of the last evaluation kept for the next `@METRIC` line (`take_metrics`)."""

    def __init__(
        self,
        eval_env: VecEnv,
        eval_freq_steps: int,
        n_training_envs: int,
        n_eval_episodes: int,
        log_dir: Path,
        on_new_best: SaveBestModel,
    ):
        super().__init__(
            eval_env,
            callback_on_new_best=on_new_best,
            n_eval_episodes=n_eval_episodes,
            eval_freq=max(1, eval_freq_steps // n_training_envs),
            log_path=str(log_dir),  # evaluations.npz; also what take_metrics reads
            best_model_save_path=None,  # saved atomically by on_new_best instead
            deterministic=True,
            verbose=1,
        )
        self.on_new_best = on_new_best
        self.reported = 0

    def _log_success_callback(self, locals_: Dict[str, Any], globals_: Dict[str, Any]) -> None:
        """Called by SB3's evaluate_policy after each step: a stop request (SIGINT) abandons the evaluation,
        and the script saves the model as after any stop."""
        raise_if_stop_requested()
        super()._log_success_callback(locals_, globals_)

    def take_metrics(self) -> Dict[str, float]:
        """The fields of the evaluation done since the last call (empty when there was none)."""
        if len(self.evaluations_results) == self.reported:
            return {}
        self.reported = len(self.evaluations_results)
        rewards = np.asarray(self.evaluations_results[-1], dtype=float)
        lengths = np.asarray(self.evaluations_length[-1], dtype=float)
        return {
            "eval_reward_mean": float(rewards.mean()),
            "eval_reward_std": float(rewards.std()),
            "eval_episode_len_mean": float(lengths.mean()),
        }

    def keep_earlier_best(self) -> None:
        """A resumed run keeps the best model already in its directory until an evaluation beats its
        recorded reward (instead of replacing it at its first evaluation)."""
        record = manifest.read(self.on_new_best.path) or {}
        reward = (record.get("best_evaluation") or {}).get("eval_reward_mean")
        if isinstance(reward, (int, float)):
            self.best_mean_reward = float(reward)
            print(f"Earlier best evaluation reward {reward:.3f} kept in {self.on_new_best.path}", flush=True)

    def summary(self) -> str:
        """The final line about evaluation: the best iteration, its reward and its files."""
        best = self.on_new_best.best
        if best is None and self.best_mean_reward > -np.inf:
            return (
                f"Evaluation: no evaluation beat the earlier best reward {self.best_mean_reward:.3f}; "
                f"{self.on_new_best.path} is unchanged."
            )
        if best is None:
            return "Evaluation: no evaluation finished, no best model saved."
        return (
            f"Best evaluation: iteration {best.iteration} (step {best.timesteps}), mean reward "
            f"{best.reward_mean:.3f} over {self.n_eval_episodes} episodes; files: "
            f"{', '.join(str(path) for path in best.files)}"
        )


def start_evaluation(
    args: argparse.Namespace,
    eval_env: VecEnv,
    n_training_envs: int,
    experiment_dir: Path,
    iteration: Callable[[], int],
    write_manifest: Callable[..., Any],
) -> GodotEvalCallback:
    """The evaluation callback the script's flags ask for (`--eval_freq`, `--eval_episodes`,
    `--onnx_export_path` for best.onnx)."""
    export = None
    onnx_path = None
    if args.onnx_export_path:
        onnx_path = best_onnx_path(args.onnx_export_path)
        export = functools.partial(export_best, algo=args.algo)
    saver = SaveBestModel(experiment_dir, iteration, write_manifest, export, onnx_path)
    evaluation = GodotEvalCallback(
        eval_env, args.eval_freq, n_training_envs, args.eval_episodes, experiment_dir, saver
    )
    if args.resume_model_path:
        evaluation.keep_earlier_best()
    return evaluation


def export_best(model: Any, path: Path, algo: str) -> None:
    """Export and verify like the final model's ONNX export; the export moves the policy to the CPU, so it is
    moved back to the training device."""
    summary = export_sb3_model(model, path, algo=algo)
    model.policy.to(model.device)
    print(f"ONNX model exported: {summary}", flush=True)
