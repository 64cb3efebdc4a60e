//! The Tandem app API, defined once over `tandem-client-core` and used by the desktop and
//! mobile shells and by `tandem-app-server` (the ui in a plain browser).
//!
//! [`AppState`] owns one client-core user agent per account, the calls, the call history and
//! the bundled lab server. Commands are its methods, reachable by name through
//! [`commands::dispatch`]; what happens without being asked arrives as [`types::AppEvent`]s
//! from [`AppState::subscribe`]. Every type that crosses to the ui derives `ts_rs::TS`, and
//! [`bindings`] writes their TypeScript twins into `ui/src/lib/bindings/`.

pub mod bindings;
pub mod commands;
pub mod explain;
pub mod files;
pub mod lab;
pub mod links;
pub mod persist;
pub mod scheme;
pub mod secrets;
pub mod server;
pub mod social;
pub mod state;
pub mod trust;
pub mod types;
pub mod video;

pub use commands::dispatch;
pub use secrets::Secrets;
pub use state::{AppOptions, AppState};
