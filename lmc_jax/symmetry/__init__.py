"""The symmetries of a network: which hidden-unit permutations leave its function unchanged
(`PermutationSpec`), read off the module itself (`derive_spec`) or written by hand, and
which permutation each layer's units follow (`units`)."""
