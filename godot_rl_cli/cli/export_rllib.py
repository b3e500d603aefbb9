"""Convert the policies of an RLlib checkpoint to ONNX files the Godot RL Agents plugin runs (see --help).

The Training Controller's CLI runs `convert_rllib_to_onnx.py --config_file CFG --output_dir DIR
[--checkpoint PATH]`: without a checkpoint, the newest checkpoint of the newest run of the config's algorithm
under the trainer's default experiment directory is exported.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from godot_rl_cli.cli_types import int_in_range
from godot_rl_cli.errors import UserError, exit_with_error, print_error
from godot_rl_cli.onnx.options import add_version_arguments
from godot_rl_cli.path_types import export_output, input_directory, input_file, plain_name
from godot_rl_cli.rllib.layout import DEFAULT_EXPERIMENT_DIR

CHECKPOINT = input_directory(
    "checkpoint", "pass a checkpoint_NNNNNN directory, or the trial or run directory holding them"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Export every policy (or one) of an RLlib checkpoint written by rllib_training_script.py "
        "(old API stack) to <output-dir>/<prefix><policy_id>.onnx, with the names the Godot plugin expects "
        "(inputs 'obs' [batch, n], the game's observation keys flattened in the game's order, and "
        "'state_ins'; outputs 'output' and 'state_outs'; dynamic batch axis), and check each file against "
        "the policy with onnxruntime. 'output' is what the plugin acts on: discrete logits per head "
        "(Q-values for DQN), or the means of continuous actions. Prints each file's path and a one-line "
        "summary; exits 1 if any requested policy was not exported.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "checkpoint_path",
        nargs="?",
        type=CHECKPOINT,
        default=None,
        help="a checkpoint_NNNNNN directory, a trial directory holding several (the latest is used), or a "
        "run directory holding one trial (default: the newest run under --experiment_dir)",
    )
    parser.add_argument(
        "--checkpoint",
        dest="checkpoint_flag",
        type=CHECKPOINT,
        default=None,
        metavar="PATH",
        help="the same as the checkpoint_path argument (the Training Controller's CLI passes it so)",
    )
    parser.add_argument(
        "--config_file",
        type=input_file("config file", "pass the RLlib YAML file"),
        default=None,
        metavar="YAML",
        help="without a checkpoint path: use the newest run of this RLlib YAML's algorithm",
    )
    parser.add_argument(
        "--experiment_dir",
        default=DEFAULT_EXPERIMENT_DIR,
        help="without a checkpoint path: where to look for the newest run, as rllib_training_script.py's "
        f"--experiment_dir (default: {DEFAULT_EXPERIMENT_DIR})",
    )
    parser.add_argument(
        "-o",
        "--output",
        "--output-dir",
        "--output_dir",
        dest="output",
        type=export_output("output"),
        default="onnx_exports",
        metavar="DIR",
        help="output directory for the .onnx files (default: ./onnx_exports); a path ending in .onnx is the "
        "file itself when one policy is exported",
    )
    parser.add_argument(
        "--policy",
        default=None,
        metavar="POLICY_ID",
        help="export only this policy, e.g. a self-play snapshot (default: every policy in the checkpoint "
        "but self-play snapshots)",
    )
    parser.add_argument(
        "--checkpoint-number",
        dest="checkpoint_number",
        type=int_in_range(0),
        default=None,
        metavar="N",
        help="use checkpoint N of the trial (checkpoint_000010 and checkpoint_10 are both 10; default: the "
        "highest)",
    )
    add_version_arguments(parser, "each policy")
    parser.add_argument(
        "--no-multiagent",
        dest="single_policy",
        action="store_true",
        help="the checkpoint holds a single policy (default_policy): export it, and fail if there are "
        "several",
    )
    parser.add_argument(
        "--prefix", type=plain_name, default="", help="prefix of the output file names (default: none)"
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.checkpoint_path and args.checkpoint_flag:
        parser.error("give the checkpoint once: as the checkpoint_path argument or as --checkpoint")

    from godot_rl_cli.onnx.rllib import output_paths, select_policies, validate_versions
    from godot_rl_cli.rllib.league import snapshot_ids
    from godot_rl_cli.rllib.saved_policies import policy_ids

    try:
        validate_versions(args.opset, args.ir_version)
        checkpoint = chosen_checkpoint(args)
        chosen = select_policies(
            policy_ids(checkpoint), args.policy, args.single_policy, snapshot_ids(checkpoint)
        )
        paths = output_paths(Path(args.output).expanduser().absolute(), args.prefix, chosen)
    except UserError as error:
        exit_with_error(error.what, error.how)
    failed = [
        policy_id for policy_id, path in paths.items() if not export_one(args, checkpoint, policy_id, path)
    ]
    return 1 if failed else 0


def chosen_checkpoint(args: argparse.Namespace) -> Path:
    """The checkpoint the arguments name, else the newest of the newest run (of the YAML's algorithm)."""
    from godot_rl_cli.rllib.config import load_run_spec
    from godot_rl_cli.rllib.layout import newest_trial, resolve_checkpoint

    checkpoint_path = args.checkpoint_path or args.checkpoint_flag
    if checkpoint_path:
        return resolve_checkpoint(Path(checkpoint_path).expanduser().absolute(), args.checkpoint_number)
    algorithm = load_run_spec(args.config_file).algorithm if args.config_file else None
    experiment_dir = Path(args.experiment_dir).expanduser().absolute()
    checkpoint = resolve_checkpoint(newest_trial(experiment_dir, algorithm), args.checkpoint_number)
    print(f"Exporting {checkpoint}, of the newest run under {experiment_dir}", flush=True)
    return checkpoint


def export_one(args: argparse.Namespace, checkpoint: Path, policy_id: str, path: Path) -> bool:
    """Export and verify one policy; a failure is one ERROR line naming it (the others still export)."""
    from godot_rl_cli.onnx.recipe import describe_failure
    from godot_rl_cli.rllib.saved_policies import export_checkpoint_policy

    try:
        summary = export_checkpoint_policy(
            checkpoint, policy_id, path, opset=args.opset, ir_version=args.ir_version, verify=args.verify
        )
    # torch.onnx and onnx.checker raise many types; any of them fails this policy only
    except Exception as error:
        what, how = describe_failure(error)
        print_error(f"policy {policy_id!r}: {what}", how)
        return False
    print(summary.path)
    print(summary, flush=True)
    return True


if __name__ == "__main__":
    sys.exit(main())
