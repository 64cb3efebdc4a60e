//! The authenticating, record-routing, forking stateful proxy.
