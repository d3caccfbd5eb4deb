"""Simulators: the far ends that stand in for hardware and peers in software-in-the-loop runs."""
