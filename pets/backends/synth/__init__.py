"""Synthetic-data backends: a Gaussian copula and differentially private MST."""
