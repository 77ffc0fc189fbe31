"""Accuracy of the analytical cost models against published measurements (../shared/reference)."""
