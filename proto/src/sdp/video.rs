//! Video stream of a call (work in progress, see ARCHITECTURE.md).
