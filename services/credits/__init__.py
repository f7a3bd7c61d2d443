"""Credits: the partner balance, an append-only ledger of credit lots (C1-C6)."""
