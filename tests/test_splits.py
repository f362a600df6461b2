"""Training splits (`--train_split`): every kind's parts are disjoint, cover what they
claim, hold the counts the spec says, and are the same for the same seed; counted here in
numpy. Bad specs are refused naming the flag, with nothing written."""
import json
import re

import numpy as np
import pytest

from lmc_jax.config import ConfigError, default_config
from lmc_jax.data.datasets import dataset_info, load_dataset, split_part
from lmc_jax.data.splits import SplitError, part_classes, split_indices
from lmc_jax.split_spec import parse_split
from tests.helpers.cli import refused, run_cli, snapshot

C = 10
RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, C, 997)  # uneven class sizes


def _parts(kind_value: str, n: int, seed: int = 0):
  return [split_indices(f"{kind_value}{k}/{n}", LABELS, C, seed) for k in range(n)]


def _disjoint_covering(parts, universe):
  joined = np.concatenate(parts)
  assert len(joined) == len(set(joined.tolist())), "parts overlap"
  assert sorted(joined.tolist()) == sorted(universe), "parts do not cover the set"


@pytest.mark.parametrize("prefix,n", [("shard:", 2), ("shard:", 3), ("skew:0.8:", 2),
                                      ("skew:0.9:", 3), ("dirichlet:0.5:", 4),
                                      ("dirichlet:100:", 2)])
def test_parts_are_disjoint_cover_and_repeat(prefix, n):
  parts = _parts(prefix, n)
  _disjoint_covering(parts, range(len(LABELS)))
  again = _parts(prefix, n)
  assert all(np.array_equal(a, b) for a, b in zip(parts, again))
  other = _parts(prefix, n, seed=1)
  assert not all(np.array_equal(a, b) for a, b in zip(parts, other))


def test_shards_are_class_balanced():
  parts = _parts("shard:", 3)
  for c in range(C):
    counts = [int((LABELS[p] == c).sum()) for p in parts]
    assert max(counts) - min(counts) <= 1 and sum(counts) == (LABELS == c).sum()


def test_skew_gives_each_shard_its_fraction_of_its_own_block():
  for p_own, n in ((0.8, 2), (0.9, 3)):
    parts = _parts(f"skew:{p_own}:", n)
    blocks = np.array_split(np.arange(C), n)
    for c in range(C):
      own = next(b for b in range(n) if c in blocks[b])
      n_c = int((LABELS == c).sum())
      counts = [int((LABELS[p] == c).sum()) for p in parts]
      assert counts[own] == int(np.floor(p_own * n_c + 0.5))
      others = [counts[k] for k in range(n) if k != own]
      assert max(others) - min(others) <= 1
    assert part_classes(f"skew:{p_own}:0/{n}", None, C) == tuple(blocks[0])


def test_dirichlet_small_alpha_concentrates_classes():
  parts = _parts("dirichlet:0.05:", 2)
  shares = np.array([[(LABELS[p] == c).sum() for c in range(C)] for p in parts], float)
  shares /= shares.sum(0)
  assert np.mean(shares.max(0) > 0.9) >= 0.7  # most classes mostly in one shard


def test_classes_hold_exactly_those_labels():
  for spec, want in (("classes:0-4", [0, 1, 2, 3, 4]), ("classes:7,2", [2, 7]),
                     ("classes:1-2,5", [1, 2, 5])):
    got = split_indices(spec, LABELS, C)
    assert got.tolist() == np.flatnonzero(np.isin(LABELS, want)).tolist()
    assert list(parse_split(spec).labels) == want
    assert list(part_classes(spec, None, C)) == want
  _disjoint_covering([split_indices("classes:0-4", LABELS, C),
                      split_indices("classes:5-9", LABELS, C)], range(len(LABELS)))


def test_empty_or_impossible_parts_are_refused():
  for spec, words in (("shard:5/3", "part 5 of 3"), ("classes:12", "label(s) [12]"),
                      ("skew:1.5:0/2", "within [0, 1]"), ("dirichlet:0:0/2", "ALPHA"),
                      ("halves", "not one of"), ("shard:1/2/3", "K/N")):
    with pytest.raises(SplitError, match=re.escape(words)):
      split_indices(spec, LABELS, C)
  with pytest.raises(SplitError, match="holds no training example"):
    split_indices("classes:3", np.zeros(5, int), C)


def test_the_config_and_the_dataset_apply_the_split():
  with pytest.raises(ConfigError, match="data.train_split is 'shard:5/3'"):
    default_config("moons", train_split="shard:5/3")
  config = default_config("moons", train_split="shard:1/2", n_train=64)
  whole, part = load_dataset(config.replace(train_split="")), load_dataset(config)
  keep = split_indices("shard:1/2", whole.y_train, 2, config.data.data_seed)
  assert np.array_equal(part.x_train, whole.x_train[keep])
  assert np.array_equal(part.x_test, whole.x_test)  # the test split stays whole
  with pytest.raises(ConfigError, match="data.train_split is 'classes:12'"):
    dataset_info(default_config("moons", train_split="classes:12"))
  assert split_part(whole, "", 0) is whole


def test_a_split_zoo_from_the_command_line(tmp_path):
  args = ["--dataset=mnist", "--train_subset=400", "--test_subset=200", "--width=4",
          "--num_models=2", "--epochs=1", f"--out={tmp_path}"]
  before = snapshot(tmp_path)
  refused(run_cli("zoo", *args, "--train_split=classes:12"), "--train_split", "[12]")
  assert snapshot(tmp_path) == before
  r = run_cli("zoo", *args, "--train_split=classes:0-4")
  assert r.returncode == 0, r.stderr[-2000:]
  doc = json.loads((tmp_path / "mnist_classes0-4_w4" / "zoo.json").read_text())
  assert doc["config"]["data"]["train_split"] == "classes:0-4"
  counts = doc["train_class_counts"]
  data = load_dataset(default_config("mnist", train_subset=400))
  assert counts == [int((data.y_train == c).sum()) if c < 5 else 0 for c in range(10)]
