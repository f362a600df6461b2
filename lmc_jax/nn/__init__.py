"""Networks: the Flax MLP, PyTorch-rule optimizers, evaluation of a stack of nets."""
