"""Quotes: the catalogue, the reseller discount policy and stored, numbered quotes (Q1-Q4)."""
