"""Analyses of zoos on disk: barriers, alignment methods compared, zoo groups, redundancy,
benchmarks."""
