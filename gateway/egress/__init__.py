"""Egress: forwarding, tenant isolation and source translation into per-peer port blocks."""
