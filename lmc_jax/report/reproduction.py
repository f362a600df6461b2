"""The whole study as a list of commands, at four scales.

`quick` is sized for a 2-core CPU in minutes (its time is in BUILD_NOTES.md): Moons at full
scale, MNIST and CIFAR-10 reduced. `cpu` is the study's own scale wherever a 2-core CPU
finishes it in about three hours in all, the rest reduced. `thesis` is the study's scale,
meant for a GPU. `smoke` only checks the pipeline. Every step is one of the documented
entry points, so the report can list exactly what produced each number.
"""
from __future__ import annotations

from typing import List, NamedTuple, Tuple

MOONS_WIDTHS = (2, 4, 8, 16, 32, 64, 128, 256, 512)
E6_CONFIGS = (("kaiming_normal_torch_bias", "adamw"), ("kaiming_uniform_torch_bias", "adamw"),
              ("kaiming_normal_torch_bias", "rmsprop"), ("kaiming_uniform_torch_bias", "rmsprop"))
E8_OPTIMIZERS = ("adamw", "sgd", "rmsprop", "adagrad")
# Section 5.2 as the study's code ran it (exp_hyperparam.py): Kaiming weights with torch's
# default biases, AdamW and RMSprop at lr 0.1 with weight decay 1e-4 and the optimizers'
# other torch defaults, and a constant learning rate (its scheduler name was misspelt, so
# the cosine schedule its text describes never ran; `--schedule=cosine` gives that).
E6_SETTINGS = ("--schedule=constant", "--lr=0.1", "--weight_decay=1e-4")
# Section 5.2.2 as the study's code ran it: torch's OneCycleLR over every step, left at its
# default cycle_momentum=True for AdamW, SGD and RMSprop, so it overwrote AdamW's beta1 and
# SGD's and RMSprop's momentum with 0.95 -> 0.85 -> 0.95 (RMSprop's momentum=0 became a live
# momentum buffer); for Adagrad, which has no momentum, the code passed cycle_momentum=False.
# The per-optimizer learning rates and decays are the cifar10 defaults of `config`.
E8_SETTINGS = {opt: ("--schedule=onecycle_torch",) + (("--cycle_momentum",)
                                                      if opt != "adagrad" else ())
               for opt in E8_OPTIMIZERS}


class Preset(NamedTuple):
  """Scale of each part of the study; E6 runs at Moons width `e6_width` (the study's 512),
  E8 at `cifar_width`.
  `mnist_method_widths`: the MNIST widths every alignment method runs on (empty: all).
  `mnist_subset`: (training, test) images the MNIST zoos use (empty: all of both)."""
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
  mnist_method_widths: tuple = ()
  mnist_subset: tuple = ()
  e6_width: int = 512


# The study's scale (SPEC.md), against which a preset's reductions are stated.
STUDY = dict(moons_widths=MOONS_WIDTHS, moons_epochs=100, moons_models=50, e6_models=10,
             e6_width=512, mnist_widths=MOONS_WIDTHS, mnist_models=50, mnist_epochs=60,
             swa_widths=(8, 16, 64, 512), swa_epochs=10, cifar_width=512, cifar_models=10,
             cifar_epochs=60)

PRESETS = {
    "quick": Preset("quick", MOONS_WIDTHS, 100, 50, 10, (8, 16, 32, 64), 10, 10,
                    (8, 64), 10, 128, 3, 5),
    # About 3 h on a 2-core CPU (estimated from BUILD_NOTES' measurements on this machine):
    # Moons zoos, planes, redundancy and E6 ~8 min; every alignment method on Moons ~14 min;
    # MNIST zoos 50 models x 60 epochs at widths 2-64 46 min (idle) to 2.5 h (shared);
    # their naive and aligned sweeps ~10 min; every method on MNIST widths 8 and 64 ~13 min;
    # SWA ~1 min; CIFAR-10 4 x (4 models x 20 epochs at 3x128) ~6 min and its dynamics ~6 min.
    "cpu": Preset("cpu", MOONS_WIDTHS, 100, 50, 10, (2, 4, 8, 16, 32, 64), 50, 60,
                  (8, 16, 64), 10, 128, 4, 20, mnist_method_widths=(8, 64)),
    "thesis": Preset("thesis", MOONS_WIDTHS, 100, 50, 10, MOONS_WIDTHS, 50, 60,
                     (8, 16, 64, 512), 10, 512, 10, 60),
    # Tiny steps: for the tests of the pipeline itself, not for results (two nets per E6
    # configuration, so that every group has a pair, at width 64: aligning 512 units on the
    # host was most of the step; MNIST cut to 1,024 + 512 images).
    "smoke": Preset("smoke", (4, 64), 5, 4, 2, (8,), 2, 1, (8,), 2, 16, 2, 1,
                    mnist_subset=(1024, 512), e6_width=64),
}


def reductions(p: Preset) -> List[Tuple[str, str, str]]:
  """(part, this preset's scale, the study's) for every part run below the study's scale."""
  s = STUDY
  out = []
  if (p.moons_widths, p.moons_models, p.moons_epochs) != (s["moons_widths"], s["moons_models"],
                                                          s["moons_epochs"]):
    out.append(("Moons (E1-E3, E5, E9)",
                f"widths {list(p.moons_widths)}, {p.moons_models} models, {p.moons_epochs} epochs",
                f"widths {list(s['moons_widths'])}, 50 models, 100 epochs"))
  if (p.e6_models, p.moons_epochs, p.e6_width) != (s["e6_models"], s["moons_epochs"],
                                                   s["e6_width"]):
    out.append(("Training dynamics (E6, E7)", f"{p.e6_models} models per configuration, "
                f"{p.moons_epochs} epochs, width {p.e6_width}",
                f"10 models per configuration, 100 epochs, width {s['e6_width']}"))
  if (set(p.mnist_widths) != set(s["mnist_widths"]) or p.mnist_models != s["mnist_models"]
      or p.mnist_epochs != s["mnist_epochs"] or p.mnist_subset):
    images = (f", {p.mnist_subset[0]:,} training and {p.mnist_subset[1]:,} test images"
              if p.mnist_subset else "")
    out.append(("MNIST (E1-E3)", f"widths {list(p.mnist_widths)}, {p.mnist_models} models, "
                f"{p.mnist_epochs} epochs{images}", f"widths {list(s['mnist_widths'])}, 50 models, "
                "60 epochs"))
  if p.mnist_method_widths:
    out.append(("Alignment methods on MNIST (beyond the study)",
                f"widths {list(p.mnist_method_widths)} (every model)",
                f"every width trained ({list(p.mnist_widths)})"))
  if set(p.swa_widths) != set(s["swa_widths"]) or p.swa_epochs != s["swa_epochs"]:
    out.append(("SWA (E4)", f"widths {list(p.swa_widths)}, {p.swa_epochs} epochs",
                f"widths {list(s['swa_widths'])}, 10 epochs"))
  if (p.cifar_width, p.cifar_models, p.cifar_epochs) != (s["cifar_width"], s["cifar_models"],
                                                         s["cifar_epochs"]):
    out.append(("CIFAR-10 optimizers (E8)", f"3 x {p.cifar_width} units, {p.cifar_models} "
                f"models per optimizer, {p.cifar_epochs} epochs",
                "3 x 512 units, 10 models per optimizer, 60 epochs"))
  return out


class Step(NamedTuple):
  section: str
  argv: List[str]  # arguments after `python -m`
  needs: str = ""  # dataset that must be installed for the step to run ('mnist', 'cifar10')


def shown(argv: List[str]) -> str:
  """The command a user types for a step: `python -m experiments.zoo ...` (the entry
  points run as `lmc_jax.cli.<name>`, which `experiments.<name>` re-exports)."""
  module, *rest = argv
  prefix = "lmc_jax.cli."
  if module.startswith(prefix):
    module = "experiments." + module[len(prefix):]
  return " ".join(["python", "-m", module, *rest])


# Beyond the study: every alignment method, with and without REPAIR (not in the smoke run).
ALIGN_ALL = ("--align=weight,activation,ste,sinkhorn,mergemany,exact", "--repair", "--diagnostics")
# The study permutes units and never flips them: the sign flips that LayerNorm's scale allows
# in its MNIST nets are left out, so its aligned numbers are the study's own measure.
STUDY_SYMMETRY = "--signs=false"
# Where the MNIST method comparison on a subset of widths writes its figures and tables
# (inside the report's figures), apart from the study's figures of every width.
MNIST_METHODS_DIR = "mnist_methods"


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
    out.append(Step("dynamics", ["lmc_jax.cli.zoo", f"--width={p.e6_width}",
                                 f"--num_models={p.e6_models}",
                                 f"--epochs={p.moons_epochs}", f"--seed={100 + g}",
                                 f"--init={init}", f"--optimizer={opt}", *E6_SETTINGS,
                                 f"--out={runs}/moons_e6"]))
    e6.append(f"{runs}/moons_e6/moons_{init}{'_' + opt if opt != 'adamw' else ''}"
              f"_w{p.e6_width}")
  out.append(Step("dynamics", ["lmc_jax.cli.dynamics", "--zoo=" + ",".join(e6),
                               "--name=moons_e6", fig]))
  mnist = f"{runs}/mnist"
  # With method widths, the study's barrier runs on every width and the comparison of every
  # method on those widths only, its figures in a folder of their own.
  mnist_align = [] if p.mnist_method_widths else align
  subset = ([f"--train_subset={p.mnist_subset[0]}", f"--test_subset={p.mnist_subset[1]}"]
            if p.mnist_subset else [])
  out += [
      Step("mnist", ["lmc_jax.cli.fetch", "--dataset=mnist", d]),
      Step("mnist", ["lmc_jax.cli.zoo", "--dataset=mnist",
                     "--width=" + ",".join(map(str, p.mnist_widths)),
                     f"--num_models={p.mnist_models}", f"--epochs={p.mnist_epochs}", d,
                     *subset, f"--out={mnist}"],
           "mnist"),
      Step("mnist", ["lmc_jax.cli.barrier", f"--runs={mnist}", d, fig, STUDY_SYMMETRY,
                     *mnist_align], "mnist"),
  ]
  if p.mnist_method_widths:
    out.append(Step("mnist", ["lmc_jax.cli.barrier",
                              "--zoo=" + ",".join(f"{mnist}/mnist_w{w}"
                                                  for w in p.mnist_method_widths),
                              d, f"--figures={figures}/{MNIST_METHODS_DIR}", STUDY_SYMMETRY,
                              *ALIGN_ALL], "mnist"))
  out.append(Step("swa", ["lmc_jax.cli.swa",
                          "--zoo=" + ",".join(f"{mnist}/mnist_w{w}" for w in p.swa_widths),
                          f"--epochs={p.swa_epochs}", "--lr=0.05", d, fig], "mnist"))
  if cifar_source:
    out.append(Step("cifar10", ["lmc_jax.cli.fetch", "--dataset=cifar10",
                                f"--source={cifar_source}", d]))
  e8 = []
  for g, opt in enumerate(E8_OPTIMIZERS):
    out.append(Step("cifar10", ["lmc_jax.cli.zoo", "--dataset=cifar10", f"--optimizer={opt}",
                                f"--seed={200 + g}", *E8_SETTINGS[opt],
                                f"--width={p.cifar_width}", f"--num_models={p.cifar_models}",
                                f"--epochs={p.cifar_epochs}", d, f"--out={runs}/cifar10"],
                    "cifar10"))
    e8.append(f"{runs}/cifar10/cifar10{'_' + opt if opt != 'adamw' else ''}_w{p.cifar_width}")
  out.append(Step("cifar10", ["lmc_jax.cli.dynamics", "--zoo=" + ",".join(e8), "--name=cifar10_e8",
                              d, fig], "cifar10"))
  return out
