"""Orders: order lines, wire-transfer proofs, reviews, bindings and upgrades (O1-O9)."""
