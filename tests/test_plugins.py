"""Alignment methods from outside the package: an installed package's entry point, or a
module named in LMC_JAX_ALIGN_PLUGINS, registers a method that the CLI then offers."""
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

from lmc_jax.align.registry import PLUGINS_ENV, load_plugins, method_names, unregister

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = '''
from lmc_jax.align.registry import Alignment, Setting, register

@register("{name}", "a plug-in test method", settings=(Setting("{name}_steps", 7, "Steps."),))
def align(task):
  return Alignment(task.star(lambda k: None), {{}})
'''


def test_an_entry_point_registers_its_method(tmp_path, monkeypatch):
  (tmp_path / "ep_plugin.py").write_text(PLUGIN.format(name="epmethod"))
  monkeypatch.syspath_prepend(str(tmp_path))
  ep = importlib.metadata.EntryPoint("epmethod", "ep_plugin", "lmc_jax.align_methods")
  monkeypatch.setattr(importlib.metadata, "entry_points",
                      lambda group: [ep] if group == "lmc_jax.align_methods" else [])
  try:
    load_plugins()
    assert "epmethod" in method_names()
  finally:
    unregister("epmethod")


def test_a_broken_plugin_is_named_and_the_rest_still_loads(monkeypatch, caplog):
  monkeypatch.setenv(PLUGINS_ENV, "no_such_plugin_module")
  load_plugins()
  assert "no_such_plugin_module" in caplog.text and PLUGINS_ENV in caplog.text
  assert "weight" in method_names()


def test_the_cli_offers_a_plugin_named_in_the_environment(tmp_path):
  (tmp_path / "env_plugin.py").write_text(PLUGIN.format(name="envmethod"))
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]),
             **{PLUGINS_ENV: "env_plugin"})
  r = subprocess.run([sys.executable, "-m", "experiments.barrier", "--help"], cwd=ROOT, env=env,
                     capture_output=True, text=True, timeout=300)
  assert "--envmethod_steps" in r.stdout and "envmethod" in r.stdout


def test_plugins_load_when_a_method_is_first_looked_up_not_at_import(tmp_path):
  """Entry points that never align (fetch, zoo) scan no plug-in: a broken one named in the
  environment is reported by the barrier command, which looks methods up, and by no other."""
  env = dict(os.environ, PYTHONPATH=str(ROOT), **{PLUGINS_ENV: "no_such_plugin_module"})

  def stderr_of(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300).stderr
  assert "no_such_plugin_module" not in stderr_of("-m", "experiments.fetch", "--help")
  assert "no_such_plugin_module" not in stderr_of("-m", "experiments.zoo", "--help")
  assert "no_such_plugin_module" not in stderr_of("-c", "import lmc_jax")
  assert "no_such_plugin_module" in stderr_of("-m", "experiments.barrier", "--help")
