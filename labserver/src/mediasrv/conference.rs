//! Audio conference rooms with mix-minus and the conference event package (RFC 4575).

use serde::{Deserialize, Serialize};

/// The `[conference]` section: rooms, PINs and mixer limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ConferenceConfig {}
