"""Data stage: downloads, raw readers and the converters to normalized tables."""
