"""The scale-free RMSNorm transformer and the alignment method `orthogonal`: a random
rotation of the residual stream, applied by hand to every weight that reads or writes it,
leaves the outputs alone (a LayerNorm stream's do not); orthogonal matching recovers a
planted rotation of every rotating group and a planted permutation of the rest; a network
no group of which rotates is refused by name; and the maps barrier.json records reproduce
its curves, recomputed in plain numpy."""
import functools

import jax
import numpy as np
import pytest

from lmc_jax import LmcError, derive_spec
from lmc_jax.align.orthogonal import apply_orthogonal, orthogonal_groups, random_orthogonal
from lmc_jax.align.orthogonal_activation import orthogonal_activation_matching
from lmc_jax.align.orthogonal_matching import orthogonal_matching, unsigned_on
from lmc_jax.align.registry import AlignTask, align_by
from lmc_jax.align.weight import weight_matching
from lmc_jax.nn import random_draws
from lmc_jax.nn.models import make_mlp
from lmc_jax.nn.transformer import make_decoder
from lmc_jax.symmetry.spec import (
  apply_permutation,
  orient_zoo,
  perm_sizes,
  random_permutation,
)
from lmc_jax.tree_utils import flatten, unflatten

VOCAB, CLASSES = 8, 7


@functools.lru_cache(maxsize=None)
def _decoder(norm, seed=1):
  """(model, variables, x), made once per norm and seed (no test changes them in place)."""
  model = make_decoder(1, 1, 2, VOCAB, CLASSES, norm)
  x = jax.random.randint(jax.random.key(0), (16, 3), 0, VOCAB).astype(np.float32)
  return model, model.init(jax.random.key(seed), x), x


@functools.lru_cache(maxsize=None)
def _apply(model):
  """`model.apply`, compiled once per model and input shape (not op by op)."""
  return jax.jit(model.apply)


def _rotate_stream_by_hand(variables, q):
  """Every leaf that writes the stream maps its stream axis by q, every one that reads it
  too (`new = q @ old` along that axis), written out per layer."""
  f = {k: np.asarray(v, np.float64) for k, v in flatten(variables).items()}
  b = "params/Block_0/"
  for path in ("params/embed/embedding", "params/pos", b + "attn/out/kernel",
               b + "Dense_1/kernel"):  # writes: the stream is the last axis
    f[path] = f[path] @ q.T
  for path in (b + "attn/out/bias", b + "Dense_1/bias"):
    f[path] = q @ f[path]
  for path in (b + "attn/query/kernel", b + "attn/key/kernel", b + "attn/value/kernel",
               b + "Dense_0/kernel", "params/head/kernel"):  # reads: the stream is axis 0
    f[path] = np.tensordot(q, f[path], axes=(1, 0))
  return unflatten({k: v.astype(np.float32) for k, v in f.items()})


def test_a_random_rotation_of_the_rms_stream_keeps_the_function_and_of_a_layernorm_one_not():
  q = np.asarray(random_orthogonal(jax.random.key(5), 32), np.float64)
  assert np.abs(q - np.eye(32)).max() > 0.1
  for norm, keeps in (("rms", True), ("layernorm", False)):
    model, variables, x = _decoder(norm)  # LayerNorm at init: scale 1, bias 0; its mean
    before = np.asarray(model.apply(variables, x))
    after = np.asarray(model.apply(_rotate_stream_by_hand(variables, q), x))
    assert (np.abs(after - before).max() < 1e-4 * np.abs(before).max()) == keeps, norm


def test_the_stream_rotates_in_the_rms_decoder_only():
  found = {}
  for norm in ("rms", "layernorm"):
    model, variables, x = _decoder(norm)
    spec = derive_spec(model, variables, x)
    stream = spec.axes_to_perm["params/head/kernel"][0]
    found[norm] = stream in orthogonal_groups(model, variables, spec, x)
  assert found == {"rms": True, "layernorm": False}


def test_orthogonal_matching_recovers_planted_rotations_and_permutations():
  model, variables, x = _decoder("rms")
  spec = derive_spec(model, variables, x)
  rotating = list(orthogonal_groups(model, variables, spec, x))
  assert len(rotating) == 3  # the stream, query.key features, value features
  sizes = perm_sizes(spec, variables)
  plant = random_permutation(jax.random.key(3), sizes)
  plant.update({p: np.arange(sizes[p]) for p in rotating})
  qs = {p: random_orthogonal(jax.random.key(10 + i), sizes[p]) for i, p in enumerate(rotating)}
  moved = apply_orthogonal(spec, qs, apply_permutation(spec, plant, variables))
  np.testing.assert_allclose(model.apply(moved, x), model.apply(variables, x), atol=1e-5)
  res = orthogonal_matching(jax.random.key(0), spec, variables, moved, rotating, 50)
  for p in rotating:  # the inverse of the plant
    np.testing.assert_allclose(res.maps[p] @ qs[p], np.eye(sizes[p]), atol=1e-4)
  for p in set(sizes) - set(rotating):
    np.testing.assert_array_equal(np.asarray(plant[p])[res.perm[p]], np.arange(sizes[p]))
  # Coordinate ascent from weight matching: never below it, and here well above.
  start = weight_matching(jax.random.key(0), unsigned_on(spec, rotating), variables, moved)
  assert all(b >= a - 1e-9 for a, b in zip(res.objective, res.objective[1:]))
  assert res.objective[-1] > start.objective[-1] + 1.0


def _planted(variables, spec, rotating, seed):
  """A copy of `variables` with a random permutation of every group and a random rotation
  of every rotating one; returns it with the plant."""
  sizes = perm_sizes(spec, variables)
  plant = random_permutation(jax.random.key(seed), sizes)
  plant.update({p: np.arange(sizes[p]) for p in rotating})
  qs = {p: random_orthogonal(jax.random.key(seed + 10 + i), sizes[p])
        for i, p in enumerate(rotating)}
  return apply_orthogonal(spec, qs, apply_permutation(spec, plant, variables)), plant, qs


def test_orthogonal_activation_matching_recovers_planted_rotations_and_permutations():
  model, variables, _ = _decoder("rms")
  x = jax.random.randint(jax.random.key(9), (64, 3), 0, VOCAB).astype(np.float32)
  spec = derive_spec(model, variables, x)
  rotating = list(orthogonal_groups(model, variables, spec, x))
  moved, plant, qs = _planted(variables, unsigned_on(spec, rotating), rotating, 6)
  res = orthogonal_activation_matching(model, spec, variables, moved, np.asarray(x), rotating)
  sizes = perm_sizes(spec, variables)
  for p in rotating:
    np.testing.assert_allclose(res.maps[p] @ qs[p], np.eye(sizes[p]), atol=1e-4)
  for p in set(sizes) - set(rotating):
    np.testing.assert_array_equal(np.asarray(plant[p])[res.perm[p]], np.arange(sizes[p]))


def test_orthogonal_activation_maps_are_scipys_procrustes_of_the_features():
  """Between two independently initialised decoders, each rotating group's map is the
  least-squares orthogonal fit of B's features onto A's that scipy computes, every site's
  features weighted by one over its number of samples."""
  from scipy.linalg import orthogonal_procrustes

  from lmc_jax.align.activation import hidden_features
  from lmc_jax.symmetry.units import feature_sites
  model, a, _ = _decoder("rms", seed=1)
  b = _decoder("rms", seed=2)[1]
  x = jax.random.randint(jax.random.key(9), (64, 3), 0, VOCAB).astype(np.float32)
  spec = derive_spec(model, a, x)
  rotating = list(orthogonal_groups(model, a, spec, x))
  spec = unsigned_on(spec, rotating)
  res = orthogonal_activation_matching(model, spec, a, b, np.asarray(x), rotating)
  sites = feature_sites(spec, model, a, x[:1])
  features = jax.jit(functools.partial(hidden_features, model, spec))  # one program
  fa, fb = features(a, x), features(b, x)
  for p in rotating:
    rows = [i for i, s in enumerate(sites) if s.perm == p]
    assert rows, p
    w = lambda f, i: np.asarray(f[i], np.float64) / np.sqrt(len(f[i]))
    r, _ = orthogonal_procrustes(np.concatenate([w(fb, i) for i in rows]),
                                 np.concatenate([w(fa, i) for i in rows]))
    np.testing.assert_allclose(res.maps[p], r.T, atol=1e-4)  # B's units times r ~ A's


def test_a_map_per_head_keeps_the_function_and_is_recovered_with_the_heads():
  """In the RMSNorm decoder each head's query/key and value features may take a rotation
  of their own (a ViT's too); planted with a permutation of every other group (the heads
  among them), `orthogonal` with maps per head brings every leaf back, where one map
  shared by the heads cannot."""
  from lmc_jax.align.orthogonal import per_head_groups
  from lmc_jax.nn.transformer import make_vit
  from lmc_jax.symmetry.spec import head_group
  model, variables, x = _decoder("rms")
  spec = derive_spec(model, variables, x)
  rotating = list(orthogonal_groups(model, variables, spec, x))
  stream = spec.axes_to_perm["params/head/kernel"][0]
  inner = list(per_head_groups(model, variables, spec, x, rotating))
  assert set(inner) == set(rotating) - {stream} and len(inner) == 2
  heads = {head_group(spec, p) for p in inner}
  assert len(heads) == 1 and perm_sizes(spec, variables)[heads.pop()] == 2
  vit = make_vit(1, 1, 4, 7, "mean", 10, (14, 14, 1))
  vx = random_draws.normal(jax.random.key(0), (3, 196))
  vv = jax.jit(vit.init)(jax.random.key(1), vx)
  vspec = derive_spec(vit, vv, vx)
  vrot = list(orthogonal_groups(vit, vv, vspec, vx))
  assert set(per_head_groups(vit, vv, vspec, vx, vrot)) == set(vrot)
  sizes = perm_sizes(spec, variables)
  plant = random_permutation(jax.random.key(4), sizes)
  for p in inner:
    plant[p] = np.arange(sizes[p])
  assert list(plant[head_group(spec, inner[0])]) == [1, 0]  # the heads swap
  qs = {}
  for i, p in enumerate(inner):
    qs[p] = np.stack([random_orthogonal(jax.random.key(40 + 2 * i + j), sizes[p])
                      for j in range(2)])
  moved = apply_orthogonal(spec, qs, apply_permutation(spec, plant, variables))
  before = np.asarray(model.apply(variables, x))
  np.testing.assert_allclose(model.apply(moved, x), before, atol=1e-4 * np.abs(before).max())
  shared = orthogonal_matching(jax.random.key(0), spec, variables, moved, rotating, 50)
  res = orthogonal_matching(jax.random.key(0), spec, variables, moved, rotating, 50, inner)
  assert all(res.maps[p].shape == (2, sizes[p], sizes[p]) for p in inner)
  assert all(b >= a - 1e-9 for a, b in zip(res.objective, res.objective[1:]))
  back = _orient_by_hand(spec, moved, res.perm, res.maps)
  for path, leaf in flatten(variables).items():
    np.testing.assert_allclose(back[path], leaf, atol=1e-4, err_msg=path)
  assert res.objective[-1] > shared.objective[-1] + 1e-3  # one map for both heads falls short


def test_merging_with_a_rotated_and_permuted_copy_by_orthogonal_gives_the_model_back():
  from lmc_jax.merging.combine import merge
  model, variables, x = _decoder("rms")
  spec = derive_spec(model, variables, x)
  rotating = list(orthogonal_groups(model, variables, spec, x))
  sizes = perm_sizes(spec, variables)
  plant = random_permutation(jax.random.key(4), sizes)
  plant.update({p: np.arange(sizes[p]) for p in rotating})
  qs = {p: random_orthogonal(jax.random.key(20 + i), sizes[p]) for i, p in enumerate(rotating)}
  copy = apply_orthogonal(spec, qs, apply_permutation(spec, plant, variables))
  merged = merge(model, spec, [variables, copy], method="orthogonal", data=np.asarray(x))
  for a, b in zip(jax.tree_util.tree_leaves(merged), jax.tree_util.tree_leaves(variables)):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_a_network_with_no_rotating_group_is_refused_by_name():
  model = make_mlp((8,), 2)
  x = random_draws.normal(jax.random.key(0), (16, 2))
  stack = jax.jit(jax.vmap(lambda k: model.init(k, x)))(jax.random.split(jax.random.key(1), 2))
  spec = derive_spec(model, jax.tree_util.tree_map(lambda a: np.asarray(a)[0], stack), x)
  task = AlignTask.make(model, spec, stack, 0, (), np.asarray(x), np.zeros(16, np.int32))
  with pytest.raises(LmcError, match="The network MLP has no group of hidden units that every "
                                     "orthogonal map may rotate.*--arch=rms_transformer"):
    align_by("orthogonal", task)


@pytest.fixture(scope="module")
def rms_zoo(tmp_path_factory):
  """A zoo of three RMSNorm decoders on a + b mod 7, as initialised (training would add
  nothing the maps' check needs, and minutes of compiling)."""
  from lmc_jax.config import default_config
  from lmc_jax.data.datasets import load_dataset
  from lmc_jax.nn.architectures import model_for
  from lmc_jax.records import ModelMetrics
  from lmc_jax.zoo.io import save_zoo
  config = default_config("modular_addition", arch="rms_transformer", modulus=7, heads=2,
                          num_models=3, epochs=1)
  model, x = model_for(config), load_dataset(config).x_train[:1]
  stack = jax.jit(jax.vmap(lambda k: model.init(k, x)))(jax.random.split(jax.random.key(0), 3))
  d = tmp_path_factory.mktemp("orthogonal") / "rms"
  save_zoo(d, config, stack, [ModelMetrics(2.0, 2.0, 0.5, 0.5)] * 3)
  return d


def _orient_by_hand(spec, variables, perm, maps):
  """One model's variables with its stored (signed) permutations and then its orthogonal
  maps applied, leaf by leaf in numpy; a map `(H, n, n)` acts head by head, the heads
  being the leaf's other axis of size H that every leaf of the group has."""
  out = {}
  for path, leaf in flatten(variables).items():
    leaf = np.asarray(leaf, np.float64)
    groups = spec.axes_to_perm[path]
    for axis, p in enumerate(groups):
      if p is None:
        continue
      v = np.asarray(perm[p])
      leaf = np.take(leaf, np.where(v < 0, ~v, v), axis=axis)
      if (path, axis) in spec.signs.get(p, ()):
        leaf = leaf * np.where(v < 0, -1.0, 1.0).reshape((-1,) + (1,) * (leaf.ndim - axis - 1))
    for axis, p in enumerate(groups):
      if p not in maps:
        continue
      q = np.asarray(maps[p], np.float64)
      if q.ndim == 2:
        leaf = np.moveaxis(np.tensordot(q, leaf, axes=(1, axis)), 0, axis)
        continue
      everywhere = set.intersection(*[set(spec.axes_to_perm[k]) for k, _ in spec.perm_to_axes[p]])
      (h,) = [g for g in everywhere if g not in (None, p)]
      hx = groups.index(h)
      new = np.empty_like(leaf)
      for i in range(q.shape[0]):  # head i's features mixed by its own map
        part = np.take(leaf, i, axis=hx)
        ax = axis if axis < hx else axis - 1
        mixed = np.moveaxis(np.tensordot(q[i], part, axes=(1, ax)), 0, ax)
        index = [slice(None)] * leaf.ndim
        index[hx] = i
        new[tuple(index)] = mixed
      leaf = new
    out[path] = leaf
  return out


@pytest.mark.parametrize("method", ["orthogonal", "orthogonal_activation"])
def test_the_recorded_maps_reproduce_the_recorded_curves(rms_zoo, method):
  import json

  from lmc_jax.analysis.barrier import analyse_zoo, read_barrier_json
  from lmc_jax.zoo.handle import open_zoo
  result = analyse_zoo(rms_zoo, methods=(method,))
  entry = result.method(method)
  assert entry.skipped is None and len(entry.maps) == 3
  doc = json.loads((rms_zoo / "barrier.json").read_text())
  assert doc["format"] == 5 and len(doc["methods"][method]["maps"]) == 3
  assert read_barrier_json(rms_zoo, 3) == result  # the maps round-trip through JSON
  zoo = open_zoo(rms_zoo)
  spec, data = zoo.spec, zoo.dataset()
  assert not spec.views and set(entry.info["rotating"]) == set(entry.maps[1])
  q = entry.maps[1][spec.axes_to_perm["params/head/kernel"][0]]  # the stream's
  assert np.abs(q - np.round(q)).max() > 0.05  # a rotation, not a permutation
  ends = [_orient_by_hand(spec, jax.tree_util.tree_map(lambda a: np.asarray(a)[k], zoo.variables),
                          entry.perms[k], entry.maps[k]) for k in (0, 2)]
  # What a later run rebuilds from the file (`orient_zoo`) is the same zoo.
  rebuilt = flatten(orient_zoo(spec, [dict(p) for p in entry.perms], [dict(m) for m in entry.maps],
                               zoo.variables))
  for path, leaf in ends[1].items():
    np.testing.assert_allclose(np.asarray(rebuilt[path])[2], leaf, atol=1e-5, err_msg=path)
  k = [tuple(p) for p in entry.curves.pairs.tolist()].index((0, 2))
  for a, alpha in enumerate(result.alphas):
    mixed = {path: ((1 - alpha) * ends[0][path] + alpha * ends[1][path]).astype(np.float32)
             for path in ends[0]}
    logits = np.asarray(_apply(zoo.model)(unflatten(mixed), data.x_test), np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    loss = -logp[np.arange(len(logp)), np.asarray(data.y_test)].mean()
    np.testing.assert_allclose(loss, entry.curves.loss[k, a], rtol=1e-4, atol=1e-5)
