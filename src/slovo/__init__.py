"""slovo: train small GPT-style language models from scratch under a wall-clock budget."""

__version__ = "0.1.0"
