"""The WireGuard data plane: one component, fed in-process (serve) or over HTTP (agent)."""
