//! (scenario module; filled in by its owner)
