//! Lab server configuration (`lab.toml`), every setting with a default.
