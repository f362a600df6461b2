"""The whole study as a list of commands, at two scales.

`quick` is sized for a 2-core CPU (its time is in BUILD_NOTES.md): Moons at full scale,
MNIST and CIFAR-10 reduced. `thesis` is the study's scale, meant for a GPU. Every step is one of the
documented entry points, so the report can list exactly what produced each number.
"""
from __future__ import annotations

from typing import List, NamedTuple

MOONS_WIDTHS = (2, 4, 8, 16, 32, 64, 128, 256, 512)
E6_CONFIGS = (("kaiming_normal_torch_bias", "adamw"), ("kaiming_uniform_torch_bias", "adamw"),
              ("kaiming_normal_torch_bias", "rmsprop"), ("kaiming_uniform_torch_bias", "rmsprop"))
E8_OPTIMIZERS = ("adamw", "sgd", "rmsprop", "adagrad")
# Section 5.2 as the study's code ran it (exp_hyperparam.py): Kaiming weights with torch's
# default biases, AdamW and RMSprop at lr 0.1 with weight decay 1e-4 and the optimizers'
# other torch defaults, and a constant learning rate (its scheduler name was misspelt, so
# the cosine schedule its text describes never ran; `--schedule=cosine` gives that).
E6_SETTINGS = ("--schedule=constant", "--lr=0.1", "--weight_decay=1e-4")


class Preset(NamedTuple):
  """Scale of each part of the study; E6 runs at Moons width 512, E8 at `cifar_width`."""
  name: str
  moons_widths: tuple
  moons_epochs: int
  moons_models: int
  e6_models: int
  mnist_widths: tuple
  mnist_models: int
  mnist_epochs: int
  swa_widths: tuple
  swa_epochs: int  # at the study's constant lr 0.05
  cifar_width: int
  cifar_models: int
  cifar_epochs: int


PRESETS = {
    "quick": Preset("quick", MOONS_WIDTHS, 100, 50, 10, (8, 16, 32, 64), 10, 10,
                    (8, 64), 10, 128, 3, 5),
    "thesis": Preset("thesis", MOONS_WIDTHS, 100, 50, 10, MOONS_WIDTHS, 50, 60,
                     (8, 16, 64, 512), 10, 512, 10, 60),
    # Tiny steps: for the tests of the pipeline itself, not for results.
    "smoke": Preset("smoke", (4, 64), 5, 4, 3, (8,), 2, 1, (8,), 2, 16, 2, 1),
}


class Step(NamedTuple):
  section: str
  argv: List[str]  # arguments after `python -m`
  needs: str = ""  # dataset that must be installed for the step to run ('mnist', 'cifar10')


# Beyond the study: every alignment method, with and without REPAIR (not in the smoke run).
ALIGN_ALL = ("--align=weight,activation,ste,sinkhorn,mergemany,exact", "--repair", "--diagnostics")
# The study permutes units and never flips them: the sign flips that LayerNorm's scale allows
# in its MNIST nets are left out, so its aligned numbers are the study's own measure.
STUDY_SYMMETRY = "--signs=false"


def steps(p: Preset, runs: str, figures: str, data_dir: str, cifar_source=None) -> List[Step]:
  d = f"--data_dir={data_dir}"
  fig = f"--figures={figures}"
  align = list(ALIGN_ALL) if p.name != "smoke" else []
  moons = f"{runs}/moons"
  out = [
      Step("moons", ["lmc_jax.cli.zoo", "--width=" + ",".join(map(str, p.moons_widths)),
                     f"--num_models={p.moons_models}", f"--epochs={p.moons_epochs}",
                     f"--out={moons}"]),
      Step("moons", ["lmc_jax.cli.barrier", f"--runs={moons}", fig, STUDY_SYMMETRY, *align]),
      Step("redundancy", ["lmc_jax.cli.redundancy", f"--runs={moons}", fig]),
      Step("plane", ["lmc_jax.cli.plane", f"--zoo={moons}/moons_w{min(64, max(p.moons_widths))}",
                     "--models=0,1,2"]),
  ]
  # Each configuration gets its own seed: with one seed, model k of every zoo would share
  # its initialisation (for the same init scheme) and look connected for that reason alone.
  e6 = []
  for g, (init, opt) in enumerate(E6_CONFIGS):
    extra = list(E6_SETTINGS)
    out.append(Step("dynamics", ["lmc_jax.cli.zoo", "--width=512", f"--num_models={p.e6_models}",
                                 f"--epochs={p.moons_epochs}", f"--seed={100 + g}",
                                 f"--init={init}", f"--optimizer={opt}", *extra,
                                 f"--out={runs}/moons_e6"]))
    e6.append(f"{runs}/moons_e6/moons_{init}{'_' + opt if opt != 'adamw' else ''}_w512")
  out.append(Step("dynamics", ["lmc_jax.cli.dynamics", "--zoo=" + ",".join(e6),
                               "--name=moons_e6", fig]))
  mnist = f"{runs}/mnist"
  out += [
      Step("mnist", ["lmc_jax.cli.fetch", "--dataset=mnist", d]),
      Step("mnist", ["lmc_jax.cli.zoo", "--dataset=mnist",
                     "--width=" + ",".join(map(str, p.mnist_widths)),
                     f"--num_models={p.mnist_models}", f"--epochs={p.mnist_epochs}", d,
                     f"--out={mnist}"],
           "mnist"),
      Step("mnist", ["lmc_jax.cli.barrier", f"--runs={mnist}", d, fig, STUDY_SYMMETRY, *align],
           "mnist"),
      Step("swa", ["lmc_jax.cli.swa",
                   "--zoo=" + ",".join(f"{mnist}/mnist_w{w}" for w in p.swa_widths),
                   f"--epochs={p.swa_epochs}", "--lr=0.05", d, fig], "mnist"),
  ]
  if cifar_source:
    out.append(Step("cifar10", ["lmc_jax.cli.fetch", "--dataset=cifar10",
                                f"--source={cifar_source}", d]))
  e8 = []
  for g, opt in enumerate(E8_OPTIMIZERS):
    out.append(Step("cifar10", ["lmc_jax.cli.zoo", "--dataset=cifar10", f"--optimizer={opt}",
                                f"--seed={200 + g}", f"--width={p.cifar_width}",
                                f"--num_models={p.cifar_models}", f"--epochs={p.cifar_epochs}", d,
                                f"--out={runs}/cifar10"], "cifar10"))
    e8.append(f"{runs}/cifar10/cifar10{'_' + opt if opt != 'adamw' else ''}_w{p.cifar_width}")
  out.append(Step("cifar10", ["lmc_jax.cli.dynamics", "--zoo=" + ",".join(e8), "--name=cifar10_e8",
                              d, fig], "cifar10"))
  return out
