//! The location service: bindings per address-of-record, cached in memory, persisted in the store.
