//! Click-to-call and web-started conferences over HTTP (third-party call control, RFC 3725).

use serde::{Deserialize, Serialize};

/// The `[api]` section: the click-to-call and conference HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {}
