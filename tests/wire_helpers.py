"""The trainer's side of the plugin's wire protocol on a real socket, to drive a game directly in tests."""

import json
import socket
import struct
import subprocess
from typing import Tuple

from conftest import find_free_port_block


class RawTrainer:
    """Listens on a free port and launches `executable` on it, as the trainers do; for faults godot-rl's
    GodotEnv cannot survive."""

    def __init__(self, executable: str, *engine_args: str, env_seed: int = 0, **game_args):
        self.port = find_free_port_block(1)
        self.listener = socket.create_server(("127.0.0.1", self.port))
        args = [executable, f"--port={self.port}", f"--env_seed={env_seed}", *engine_args] + [
            f"--{k}={v}" for k, v in game_args.items()
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.conn = None

    def connect(self, timeout: float = 10) -> Tuple[dict, dict]:
        """Accept the game, then handshake, env_info and reset; returns the env_info and reset replies."""
        self.listener.settimeout(timeout)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(5)
        for message in (
            {"type": "handshake", "major_version": "0", "minor_version": "7"},
            {"type": "env_info"},
        ):
            self.send(message)
        env_info = self.receive()
        self.send({"type": "reset"})
        return env_info, self.receive()

    def send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.conn.sendall(struct.pack("<I", len(body)) + body)

    def receive_raw(self) -> bytes:
        header = self._exactly(4)
        return self._exactly(struct.unpack("<I", header)[0])

    def receive(self) -> dict:
        return json.loads(self.receive_raw())

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("game closed the connection")
            data += chunk
        return data

    def step(self) -> None:
        self.send({"type": "action", "action": [{"move": [0.5, 0.5]}]})

    def close(self) -> None:
        if self.conn:
            self.conn.close()
        self.listener.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
