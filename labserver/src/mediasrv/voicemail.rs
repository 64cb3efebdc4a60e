//! Voicemail: deposit on no answer, busy or not registered, retrieval by DTMF, MWI (RFC 3842).

use serde::{Deserialize, Serialize};

/// The `[voicemail]` section: mailboxes, timeouts, storage and e-mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct VoicemailConfig {}
