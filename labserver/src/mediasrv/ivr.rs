//! IVR menus from the configuration: prompts, DTMF choices, timeouts, retries and transfers.

use serde::{Deserialize, Serialize};

/// The `[ivr]` section: menus, prompts, choices and timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IvrConfig {}
