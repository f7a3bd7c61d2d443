"""Licensing: entitlements per customer email, appliances and signed licences (L1-L8)."""
