"""The controller's policy types (`--policy-type`, `custom_model: tui_cnn | tui_grn`) and their defaults, the
same for both trainers (CONTROLLER.md: `--cnn-channels` 32,64,64, `--grn-hidden-size` 128). No torch here:
the flags' --help reads these."""

POLICY_TYPES = ("mlp", "cnn", "lstm", "grn")
DEFAULT_CNN_CHANNELS = (32, 64, 64)
DEFAULT_GRN_HIDDEN_SIZE = 128
