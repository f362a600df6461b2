"""Linear mode connectivity: curves between every pair, the measures on them, REPAIR, loss
planes."""
