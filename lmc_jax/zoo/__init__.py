"""Zoos: N networks trained at once, split over devices, written to and read from disk."""
