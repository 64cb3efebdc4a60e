//! The apps: `cargo xtask bindings` (regenerate the ui's TypeScript types from the Rust API
//! types of `tandem-app`).

use anyhow::Result;

use crate::cmd::{Step, cargo};

/// `cargo xtask bindings`: rewrites `ui/src/lib/bindings/` from the Rust types.
pub fn bindings() -> Result<()> {
    let mut c = cargo(&["test", "-p", "tandem-app", "--test", "bindings"]);
    c.env("TANDEM_UPDATE_BINDINGS", "1");
    Step::new("bindings", c).run()
}
