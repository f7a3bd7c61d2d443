"""The four services of xo-reseller; each has the same shape (domain, handlers, store, app)."""
