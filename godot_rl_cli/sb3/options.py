"""Command-line flags of stable_baselines3_training_script.py (imports nothing heavy: --help stays fast)."""

import argparse
from typing import Any, Callable, Dict, List, Optional, Tuple

from godot_rl_cli.algorithms import ALGORITHMS, SB3_ALGORITHMS
from godot_rl_cli.cli_types import (
    HelpFormatter,
    add_flag,
    float_in_range,
    int_in_range,
    int_list,
    non_negative_float,
    positive_float,
    seed_value,
)
from godot_rl_cli.game.process import game_file
from godot_rl_cli.game.settings import PORT_MAX, add_game_arguments
from godot_rl_cli.memory import gpu_device_files, network_too_large
from godot_rl_cli.path_types import model_file, output_file, output_folder, plain_name
from godot_rl_cli.policy_types import DEFAULT_CNN_CHANNELS, DEFAULT_GRN_HIDDEN_SIZE, POLICY_TYPES
from godot_rl_cli.sb3.demo_options import add_demo_arguments, check_demo_arguments
from godot_rl_cli.sb3.outputs import output_conflict, plan_final_model
from godot_rl_cli.threads import add_thread_argument

HYPERPARAMETER_FLAGS: Dict[str, Tuple[Callable[[str], Any], str]] = {
    "learning_rate": (positive_float, "learning rate"),
    "n_steps": (int_in_range(1), "rollout steps per env per update"),
    "batch_size": (int_in_range(2), "minibatch size (ppo: min(64, n_steps*envs) unless set)"),
    "n_epochs": (int_in_range(1), "PPO epochs per update"),
    "gamma": (float_in_range(0, 1), "discount factor, 0 to 1"),
    "gae_lambda": (float_in_range(0, 1), "GAE lambda, 0 to 1"),
    "ent_coef": (non_negative_float, "entropy coefficient (SAC: 'auto' unless set)"),
    "clip_range": (positive_float, "PPO clip range"),
    "vf_coef": (non_negative_float, "value loss coefficient"),
    "max_grad_norm": (positive_float, "gradient clipping norm"),
}


def defaults_text(name: str) -> str:
    """Which algorithms use a hyperparameter and with which default, from the algorithm table."""
    users = [algo for algo in SB3_ALGORITHMS if name in ALGORITHMS[algo].sb3_hyperparameters]
    ours = [
        f"{algo} {ALGORITHMS[algo].sb3_defaults[name]:g}"
        for algo in users
        if name in ALGORITHMS[algo].sb3_defaults
    ]
    theirs = [
        algo
        for algo in users
        if name not in ALGORITHMS[algo].sb3_defaults and f"{algo}:" not in HYPERPARAMETER_FLAGS[name][1]
    ]
    parts = ([f"default {', '.join(ours)}"] if ours else []) + (
        [f"SB3's default for {', '.join(theirs)}"] if theirs else []
    )
    return f" ({'; '.join(parts)})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stable_baselines3_training_script.py",
        description="Train one policy for a Godot RL Agents game with Stable-Baselines3. With "
        "CONTROLLER_METRICS set, one '@METRIC {json}' line per training iteration goes to stdout. Ctrl+C "
        "(SIGINT) saves the model and closes the game; a second Ctrl+C skips the save.",
        formatter_class=HelpFormatter,
        allow_abbrev=False,
        fromfile_prefix_chars="@",  # @FILE: arguments one per line, as hyperparameter_search.py writes them
    )
    game = add_game_arguments(parser, env_path_type=game_file)
    game.add_argument(
        "--n_parallel",
        type=int_in_range(1, 64),
        default=1,
        help="game processes to run side by side (ports port..port+n-1)",
    )
    game.add_argument(
        "--viz", dest="show_window", action="store_true", help="show the window of the first game"
    )
    add_flag(
        game,
        "debug_panel",
        action="store_true",
        help="before training, print what the first game sends for one real reset and one real step",
    )

    run = parser.add_argument_group("training")
    run.add_argument(
        "--algo",
        type=str.lower,
        choices=sorted(SB3_ALGORITHMS),
        default="ppo",
        help="SB3 algorithm; the action space decides which fit",
    )
    run.add_argument(
        "--timesteps",
        type=int_in_range(1),
        default=1_000_000,
        help="env steps to train (additional steps when resuming)",
    )
    run.add_argument(
        "--experiment_dir",
        type=output_folder("--experiment_dir"),
        default="logs/sb3",
        help="directory for TensorBoard logs, checkpoints and the final model",
    )
    run.add_argument(
        "--experiment_name", type=plain_name, default="experiment", help="name of this run in the logs"
    )
    run.add_argument(
        "--seed",
        type=seed_value,
        default=0,
        help="seed for numpy, torch and the games, 0 to 2**32-1 (game i gets seed + i)",
    )
    run.add_argument("--device", default="auto", help="torch device: auto, cpu or cuda")
    run.add_argument(
        "--linear_lr_schedule", action="store_true", help="decay the learning rate linearly to 0 over the run"
    )

    models = parser.add_argument_group("models")
    models.add_argument(
        "--resume_model_path", type=model_file, default=None, help="continue training this saved model (.zip)"
    )
    models.add_argument(
        "--save_model_path",
        type=output_file("--save_model_path"),
        default=None,
        help="where to save the final model (default: <experiment_dir>/<experiment_name>_final.zip)",
    )
    models.add_argument(
        "--save_checkpoint_frequency",
        type=int_in_range(1),
        default=None,
        help="save <experiment_dir>/rl_model_<steps>_steps.zip every N env steps",
    )
    models.add_argument(
        "--onnx_export_path",
        type=output_file("--onnx_export_path"),
        default=None,
        help="also export the final policy to this ONNX file (verified)",
    )
    models.add_argument(
        "--inference",
        action="store_true",
        help="run the saved model (--resume_model_path) deterministically without training",
    )

    add_thread_argument(run)

    evaluation = parser.add_argument_group("evaluation (off unless --eval_freq is given)")
    add_flag(
        evaluation,
        "eval_freq",
        type=int_in_range(1),
        default=None,
        help="every N env steps (all training games together), play --eval_episodes deterministic episodes "
        "on one more game on port port+n_parallel; a new best mean reward saves "
        "<experiment_dir>/best_model.zip (and best.onnx beside --onnx_export_path)",
    )
    add_flag(
        evaluation,
        "eval_episodes",
        type=int_in_range(1),
        default=5,
        help="episodes per evaluation",
    )

    policy = parser.add_argument_group("policy network (the controller's flags)")
    policy_type_help = (
        "mlp; cnn for '2d' image keys; grn (gated residual blocks); lstm is refused (see README)"
    )
    add_flag(policy, "policy-type", choices=POLICY_TYPES, default="mlp", help=policy_type_help)
    add_flag(
        policy, "policy-hidden-layers", type=int_list, default=[64, 64], help="hidden layer sizes, e.g. 64,64"
    )
    add_flag(
        policy,
        "cnn-channels",
        type=int_list,
        default=list(DEFAULT_CNN_CHANNELS),
        help="conv channels per layer (cnn)",
    )
    for name in ("lstm-hidden-size", "lstm-num-layers"):
        add_flag(
            policy,
            name,
            type=int_in_range(1),
            default=None,
            help="accepted for the controller; lstm is refused",
        )
    add_flag(
        policy,
        "grn-hidden-size",
        type=int_in_range(1),
        default=DEFAULT_GRN_HIDDEN_SIZE,
        help="width of the gated residual blocks",
    )

    hyper = parser.add_argument_group("hyperparameters (omitted: the algorithm's default)")
    for name, (value_type, description) in HYPERPARAMETER_FLAGS.items():
        hyper.add_argument(f"--{name}", type=value_type, default=None, help=description + defaults_text(name))
    add_demo_arguments(parser)
    return parser


def what_cannot_run(args: argparse.Namespace) -> Optional[str]:
    """A port past 65535 after the offsets, layers that do not fit in memory or a GPU this machine lacks."""
    last_port = args.port + args.n_parallel - 1 + (1 if args.eval_freq else 0)
    if last_port > PORT_MAX:
        evaluation = " and the evaluation game" if args.eval_freq else ""
        return (
            f"--port {args.port} with {args.n_parallel} game(s){evaluation} needs ports up to {last_port}, "
            f"past {PORT_MAX} (pass a lower --port)"
        )
    sizes = {
        "--policy-hidden-layers": (args.policy_hidden_layers, 1),
        "--cnn-channels": (args.cnn_channels, 9),  # 3x3 kernels at least
        "--grn-hidden-size": ([args.grn_hidden_size] * 2, 1),
    }
    for flag, (layers, kernel_area) in sizes.items():
        problem = network_too_large(layers, kernel_area)
        if problem:
            return f"{flag}: {problem}"
    if args.device.strip().lower().startswith("cuda") and not gpu_device_files():
        return f"--device {args.device}: this machine has no GPU (pass --device cpu, or auto)"
    return None


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.inference and not args.resume_model_path:
        parser.error("--inference requires --resume_model_path")
    if args.n_parallel > 1 and not args.env_path:
        parser.error("--n_parallel > 1 requires --env_path (in-editor training runs one game)")
    if args.eval_freq and not args.env_path:
        parser.error("--eval_freq requires --env_path (evaluation runs on a game of its own)")
    if args.eval_freq and args.inference:
        parser.error("--eval_freq trains; --inference does not")
    problem = what_cannot_run(args)
    if problem:
        parser.error(problem)
    args.final_model = plan_final_model(args)
    conflict = output_conflict(args, args.final_model)
    if conflict:
        parser.error(conflict)
    check_demo_arguments(parser, args)
    return args
