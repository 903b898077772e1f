"""Provider simulators: real HTTP servers on 127.0.0.1 that answer like the vendors' APIs."""
