"""WireGuard data plane: backends, reconciler, session tracking and collection."""
