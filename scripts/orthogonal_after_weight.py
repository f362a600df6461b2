"""Epsilon of a zoo's lines to model 0: naive, weight-matched, and weight-matched then
rotated by orthogonal Procrustes in every group the network lets rotate (`align.orthogonal`).

  python scripts/orthogonal_after_weight.py runs/mnist_vit_w1 [runs/mnist_vit_w2 ...]

Prints one line per zoo: the groups that rotate, and the median (over models 1..n-1) test
epsilon of each. One Procrustes step after weight matching, for comparison with the joint
coordinate ascent of `python -m experiments.barrier --align=orthogonal`.
"""
import sys

import jax
import numpy as np

from lmc_jax.align.orthogonal import apply_orthogonal, orthogonal_alignment, orthogonal_groups
from lmc_jax.align.registry import AlignTask, align_by
from lmc_jax.lmc.interpolation import pair_sweep
from lmc_jax.lmc.measures import epsilon
from lmc_jax.tree_utils import take
from lmc_jax.zoo.handle import open_zoo


def main(directories):
  for directory in directories:
    zoo = open_zoo(directory)
    data = zoo.dataset()
    spec = zoo.spec
    task = AlignTask.make(zoo.model, spec, zoo.variables, 0, (), data.x_train, data.y_train,
                          data.x_test, data.y_test)
    weight = align_by("weight", task).params
    groups = orthogonal_groups(zoo.model, take(weight, 0), spec, data.x_train[:16])
    ref = take(weight, 0)
    rotated = [ref] + [apply_orthogonal(spec, orthogonal_alignment(spec, ref, take(weight, k),
                                                                   groups), take(weight, k))
                       for k in range(1, zoo.num_models)]
    rotated = jax.tree_util.tree_map(lambda *a: np.stack(a), *rotated)
    pairs = np.array([[0, k] for k in range(1, zoo.num_models)])
    shown = []
    for name, stack in (("naive", zoo.variables), ("weight", weight), ("weight+orthogonal",
                                                                      rotated)):
      c = pair_sweep(zoo.model, stack, pairs, data.x_test, data.y_test)
      shown.append(f"{name} {np.median(epsilon(c.loss, c.alphas)):.4f}")
    print(f"{directory}: rotating groups {groups}; median epsilon " + ", ".join(shown))


if __name__ == "__main__":
  main(sys.argv[1:])
