"""Hyperparameter search over the suite's trainers with Ray Tune (hyperparameter_search.py, godot-search)."""
