"""Merging networks trained on different data or tasks into one: permutation methods (every
registered alignment method, then the weighted mean), ZipIt!'s zip, REPAIR and the
BatchNorm reset on the merged network, and the evaluations merging is judged by."""
