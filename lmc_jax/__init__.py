"""lmc_jax: train zoos of networks at once, align them by permutation, and measure linear
mode connectivity along every line between them."""

__version__ = "0.1.0"
