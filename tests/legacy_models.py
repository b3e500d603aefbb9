"""Model files as older releases wrote them, built from a model of this suite: SB3 1.x pickled its spaces as
`gym` classes (godot_rl_agents' example models: SB3 1.6.2 with gym 0.26). The pickles are written in a
child process that has a stand-in `gym` package with gym 0.26's class paths and attributes, so this process
never imports a fake `gym`."""

import subprocess
import sys
from pathlib import Path

WRITER = r'''
import base64, collections, json, pickle, sys, types, zipfile
import gymnasium
from stable_baselines3.common.save_util import json_to_data

source, target, module_name = sys.argv[1:4]
classes = {}
CLASSES = [("gym.spaces.box", "Box"), ("gym.spaces.dict", "Dict"), ("gym.spaces.discrete", "Discrete"),
           ("gym.spaces.multi_discrete", "MultiDiscrete")]
for path, name in CLASSES:
    path = path.replace("gym", module_name, 1)
    parts = path.split(".")
    for depth in range(1, len(parts) + 1):
        package = ".".join(parts[:depth])
        sys.modules.setdefault(package, types.ModuleType(package))
    cls = type(name, (), {"__module__": path})
    setattr(sys.modules[path], name, cls)
    classes[name] = cls

def as_gym(space):
    """A gym 0.26 space with `space`'s content: its class path and its instance attributes."""
    state = {"_np_random": None, "_shape": space.shape, "dtype": space.dtype}
    if isinstance(space, gymnasium.spaces.Dict):
        state.update(spaces=collections.OrderedDict((k, as_gym(v)) for k, v in space.spaces.items()))
    elif isinstance(space, gymnasium.spaces.Box):
        state.update(low=space.low, high=space.high, bounded_below=space.bounded_below,
                     bounded_above=space.bounded_above, low_repr=space.low_repr, high_repr=space.high_repr)
    elif isinstance(space, gymnasium.spaces.Discrete):
        state.update(n=space.n, start=space.start)
    else:
        state.update(nvec=space.nvec, start=space.start)
    legacy = classes[type(space).__name__].__new__(classes[type(space).__name__])
    legacy.__dict__.update(state)
    return legacy

with zipfile.ZipFile(source) as archive:
    members = {name: archive.read(name) for name in archive.namelist()}
data = json.loads(members["data"])
spaces = json_to_data(members["data"].decode())
for key in ("observation_space", "action_space"):
    legacy = as_gym(spaces[key])
    data[key][":type:"] = f"<class '{type(legacy).__module__}.{type(legacy).__name__}'>"
    data[key][":serialized:"] = base64.b64encode(pickle.dumps(legacy)).decode()
members["data"] = json.dumps(data, indent=4).encode()
members["system_info.txt"] = (
    b"- OS: Linux\n- Python: 3.10.6\n- Stable-Baselines3: 1.6.2\n- PyTorch: 1.12.1\n- GPU Enabled: False\n"
    b"- Numpy: 1.23.4\n- Gym: 0.26.2\n"
)
with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
    for name, content in members.items():
        archive.writestr(name, content)
'''


def write_legacy_model(source: Path, target: Path, module_name: str = "gym") -> Path:
    """`source` (a model of this suite) saved again as SB3 1.x with gym 0.26 saved it; another
    `module_name` stands for a package that no release provides (a model that truly cannot load)."""
    subprocess.run(
        [sys.executable, "-c", WRITER, str(source), str(target), module_name], check=True, timeout=120
    )
    return target
