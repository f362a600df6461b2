"""The reproduction's zoos train with the settings the study's code ran, and the committed
quick report is the study as `experiments.reproduce --preset=quick` runs it today.

Nothing here trains: the zoo commands of the presets are parsed into configs by the zoo
entry point's own flags (in one subprocess), and E8's optimizers are checked a few steps
against torch's rules written out in numpy."""
import dataclasses
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lmc_jax.config import ZooConfig
from lmc_jax.nn.optim import optimizer_for
from lmc_jax.report.reproduction import E8_OPTIMIZERS, PRESETS, shown, steps

ROOT = Path(__file__).resolve().parents[1]
QUICK = ROOT / "docs" / "quick" / "report.md"
# The paths `python -m experiments.reproduce --preset=quick` uses by default.
QUICK_PATHS = ("runs/reproduce_quick", "docs/quick/figures", "data")

STALE = ("docs/quick/report.md is not what `python -m experiments.reproduce --preset=quick` "
         "runs today: run that command (it resumes where it stopped) and commit docs/quick")

_PARSE = """
import json, sys
from lmc_jax.cli import zoo
from lmc_jax.cli.config_flags import widths_from_flags
from lmc_jax.zoo.runs import zoo_dirname
out = []
for argv in json.loads(sys.stdin.read()):
  zoo.FLAGS.unparse_flags()
  zoo.FLAGS(["zoo", *argv[1:]])
  for w in widths_from_flags():
    c = zoo.config_from_flags(w)
    out.append([argv, f"{zoo.FLAGS.out}/{zoo_dirname(c)}", c.to_dict()])
print(json.dumps(out))
"""


def zoo_configs(preset: str, paths=QUICK_PATHS):
  """[(argv, zoo folder, ZooConfig)] of every zoo the preset's zoo steps would train."""
  argvs = [s.argv for s in steps(PRESETS[preset], *paths) if s.argv[0] == "lmc_jax.cli.zoo"]
  r = subprocess.run([sys.executable, "-c", _PARSE], input=json.dumps(argvs), cwd=ROOT,
                     env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  return [(a, folder, ZooConfig.from_dict(d))
          for a, folder, d in json.loads(r.stdout.strip().splitlines()[-1])]


@pytest.fixture(scope="module")
def quick_zoos():
  return zoo_configs("quick")


def torch_onecycle(total, peak, div=25.0, final_div=1e4, pct=0.3):
  """(lr, momentum) per step of torch's OneCycleLR(max_lr=peak, total_steps=total) with its
  defaults (cos annealing, cycle_momentum, base 0.85, max 0.95), as numpy arrays."""
  k = np.arange(total, dtype=np.float64)
  end1, end2 = pct * total - 1, total - 1.0
  first = k <= end1
  frac = np.where(first, k / end1, (k - end1) / (end2 - end1))
  cos_out = lambda a, b: b + (a - b) / 2 * (np.cos(np.pi * frac) + 1)
  lr = np.where(first, cos_out(peak / div, peak), cos_out(peak, peak / div / final_div))
  mom = np.where(first, cos_out(0.95, 0.85), cos_out(0.85, 0.95))
  return lr, mom


def torch_run(optimizer, config, total, steps_run, grad_fn, w0):
  """torch.optim.<optimizer> with the config's settings under OneCycleLR, as its docs write
  the updates; the momentum cycles where the config says so (RMSprop then keeps torch's
  buffer b = m b + g / (sqrt(v) + eps), SGD's b = m b + g, AdamW's beta1 = m)."""
  o = config.optim
  lr, mom = torch_onecycle(total, o.peak_lr)
  w = np.array(w0, np.float64)
  m, v, buf = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
  for k in range(steps_run):
    g = grad_fn(w)
    t = k + 1
    if optimizer == "adamw":
      b1 = mom[k] if o.cycle_momentum else 0.9
      w = w * (1 - lr[k] * o.weight_decay)
      m = b1 * m + (1 - b1) * g
      v = 0.999 * v + 0.001 * g * g
      w = w - lr[k] / (1 - b1 ** t) * m / (np.sqrt(v) / math.sqrt(1 - 0.999 ** t) + 1e-8)
    elif optimizer == "sgd":
      g = g + o.weight_decay * w
      buf = g if k == 0 else (mom[k] if o.cycle_momentum else o.momentum) * buf + g
      w = w - lr[k] * buf
    elif optimizer == "rmsprop":
      g = g + o.weight_decay * w
      v = 0.99 * v + 0.01 * g * g
      step = g / (np.sqrt(v) + 1e-8)
      if o.cycle_momentum:
        buf = mom[k] * buf + step
        step = buf
      w = w - lr[k] * step
    else:  # adagrad: no momentum to cycle
      g = g + o.weight_decay * w
      v = v + g * g
      w = w - lr[k] * g / (np.sqrt(v) + 1e-10)
  return w


def test_e8_zoos_train_with_the_momentum_the_studys_code_gave_them(quick_zoos):
  """The study's E8 code ran torch's OneCycleLR with its default cycle_momentum=True on
  AdamW, SGD and RMSprop (turning RMSprop's momentum on) and False on Adagrad: each E8
  config of the preset, its optimizer built as training builds it, follows that rule for
  the first steps of a run (one step would not see the momentum)."""
  e8 = {c.optim.optimizer: c for _, _, c in quick_zoos if c.data.dataset == "cifar10"}
  assert sorted(e8) == sorted(E8_OPTIMIZERS)
  assert {o: (c.optim.schedule, c.optim.cycle_momentum) for o, c in e8.items()} == {
      "adamw": ("onecycle_torch", True), "sgd": ("onecycle_torch", True),
      "rmsprop": ("onecycle_torch", True), "adagrad": ("onecycle_torch", False)}
  target = np.array([1.0, -2.0, 3.0, 0.5])
  grad_fn = lambda w: 2 * (w - target) * np.array([1.0, 3.0, 0.3, 10.0])
  w0 = np.array([0.5, 0.5, -0.5, 0.0])
  total, run = 40, 3
  for name, config in e8.items():
    tx = optimizer_for(config.optim, total)
    w = jnp.asarray(w0, jnp.float32)
    state = tx.init(w)
    for _ in range(run):
      updates, state = tx.update(jnp.asarray(grad_fn(np.asarray(w, np.float64)), jnp.float32),
                                 state, w)
      w = optax.apply_updates(w, updates)
    got = np.asarray(w, np.float64) - w0
    want = torch_run(name, config, total, run, grad_fn, w0) - w0
    np.testing.assert_allclose(got, want, rtol=2e-3, err_msg=name)
    if name == "rmsprop":  # the momentum buffer is what moves these weights this far
      off = dataclasses.replace(config, optim=dataclasses.replace(config.optim,
                                                                  cycle_momentum=False))
      no_momentum = torch_run(name, off, total, run, grad_fn, w0) - w0
      assert np.abs(want).min() > 1.5 * np.abs(no_momentum).max()


def test_torch_onecycle_oracle_is_the_documented_rule():
  """The numpy oracle above: lr peak at step 0.3 total - 1, momentum 0.85 there, both ends."""
  lr, mom = torch_onecycle(100, 1e-2)
  assert lr[0] == pytest.approx(1e-2 / 25) and lr.argmax() == 29
  assert lr[-1] == pytest.approx(1e-2 / 25 / 1e4)
  assert mom[0] == pytest.approx(0.95) and mom[29] == pytest.approx(0.85)
  assert mom[-1] == pytest.approx(0.95) and mom.argmin() == 29


def _table(report: str, heading: str):
  """The rows (lists of cells) of the first Markdown table after `heading`."""
  text = report[report.index(heading):]
  lines = [ln for ln in text.splitlines()[1:] if ln.startswith("|")]
  start = text.splitlines()[1:].index(lines[0])
  rows = []
  for ln in text.splitlines()[1 + start:]:
    if not ln.startswith("|"):
      break
    rows.append([c.strip() for c in ln.strip("|").split("|")])
  return rows[0], rows[2:]


def test_committed_quick_report_is_what_the_quick_preset_runs_today(quick_zoos):
  """docs/quick/report.md lists the commands `experiments.reproduce --preset=quick` runs
  today, every one finished, and each zoo was trained with the settings today's zoo
  command gives it (LayerNorm order, optimizer, schedule, momentum, scale)."""
  from lmc_jax.report.markdown import ZOO_SETTINGS, zoo_settings_row
  report = QUICK.read_text()
  assert "Generated by `python -m experiments.reproduce --preset=quick`" in report, STALE
  head, rows = _table(report, "## Commands")
  assert head == ["command", "status", "seconds"]
  want = [shown(s.argv) for s in steps(PRESETS["quick"], *QUICK_PATHS)]
  assert [r[0].strip("`") for r in rows] == want, STALE
  assert all(r[1].startswith("ok") for r in rows), [r for r in rows if not r[1].startswith("ok")]
  head, rows = _table(report, "## Zoo settings")
  assert tuple(head) == ZOO_SETTINGS
  recorded = {r[0]: r[1:] for r in rows}
  today = {folder: [str(c) for c in zoo_settings_row(config, config.train.num_models)]
           for _, folder, config in quick_zoos}
  assert recorded == today, STALE


def test_the_cpu_preset_reuses_the_mnist_zoos_trained_in_the_background():
  """The cpu preset's MNIST zoo step is exactly the command that trains its zoos apart."""
  argvs = [s.argv for s in steps(PRESETS["cpu"], "/work/runs/reproduce_cpu", "docs/cpu/figures",
                                 "data")]
  assert shown(next(a for a in argvs if "--dataset=mnist" in a and a[0].endswith("zoo"))) == (
      "python -m experiments.zoo --dataset=mnist --width=2,4,8,16,32,64 --num_models=50 "
      "--epochs=60 --data_dir=data --out=/work/runs/reproduce_cpu/mnist")
  assert re.search(r"--figures=docs/cpu/figures/mnist_methods", " ".join(map(" ".join, argvs)))
