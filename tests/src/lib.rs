//! Shared helpers for Tandem's integration and interop tests: free ports, peer processes, cleanup.
