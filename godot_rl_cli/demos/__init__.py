"""Learning from the Godot RL Agents plugin's recorded expert demonstrations: reading and checking the demo
files (`files`), behaviour cloning (`bc`), GAIL (`gail`) and the SB3 trainer's demonstration phases
(`phases`); RLlib's behaviour-cloning pre-training is `rllib_bc`."""
