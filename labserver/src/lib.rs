//! The Tandem lab server: registrar, authenticating proxy, storage and call records.
