"""The product's shared package: contracts, topology, storage and runtime used by every service."""
