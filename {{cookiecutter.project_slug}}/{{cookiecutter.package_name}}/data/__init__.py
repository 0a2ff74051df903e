"""Interactions in: the contract, the sources that produce it, the synthetic generator, splits and their
leakage check."""
