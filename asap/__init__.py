"""asap: amortized doubly-stochastic attention via sliced dual projection, and its benchmark suite."""

__version__ = "0.1.0"
