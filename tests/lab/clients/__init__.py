"""Client programs the protocol lab tests run inside the client namespace (as scripts)."""
