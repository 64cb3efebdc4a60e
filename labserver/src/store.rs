//! Persistent storage: users (HA1 only), registrations, call records; SQLite or PostgreSQL.
