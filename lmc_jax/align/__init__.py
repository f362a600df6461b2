"""Alignment: permutation specs, the registry of alignment methods and the methods themselves."""
