"""barrier.json laid out as earlier versions of lmc_jax wrote it, made from a format-3 dict
by hand (from the layouts those versions documented), so the tests of the readers do not
lean on the code under test."""
import copy

CURVE_KEYS = ("pairs", "loss", "acc", "epsilon", "barrier", "rebasin_barrier")


def as_format_2(doc: dict) -> dict:
  """Format 2: weight matching's curves once, as a top-level 'aligned' with the method's
  summary beside them; REPAIR's curves as entries '<name>+repair' of 'methods' (those of a
  method with its reference and settings), 'naive+repair' for the naive curves."""
  doc = copy.deepcopy(doc)
  doc["format"] = 2
  methods = {}
  for name, entry in doc["methods"].items():
    repaired = entry.pop("repaired", None)
    if name == "weight" and "skipped" not in entry:
      curves = {k: entry.pop(k) for k in CURVE_KEYS}
      doc["aligned"] = dict(curves, reference=entry["reference"], method="weight_matching",
                            max_iter=entry["settings"]["max_iter"],
                            seed=entry["settings"]["seed"], matcher=entry["info"]["matcher"],
                            sweeps=entry["info"]["sweeps"])
    methods[name] = entry
    if repaired is not None:
      methods[f"{name}+repair"] = dict(repaired, reference=entry["reference"],
                                       settings=entry["settings"])
  repaired = doc["naive"].pop("repaired", None)
  if repaired is not None:
    methods["naive+repair"] = repaired
  doc["methods"] = methods
  return doc


def as_format_1(doc: dict) -> dict:
  """Format 1 (no 'format' key): as format 2, but 'methods.weight' held the curves too."""
  doc = as_format_2(doc)
  del doc["format"]
  if "aligned" in doc:
    doc["methods"]["weight"].update({k: doc["aligned"][k] for k in CURVE_KEYS})
  return doc
