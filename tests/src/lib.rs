//! Shared helpers for Tandem's integration and interop tests: free ports, peer processes, cleanup.
//!
//! Launchers: `tandem-lab` ([`LabServer`]), Kamailio, SIPp, baresip (ctrl_tcp, WAV source and decoded-audio dumps),
//! linphonec (stdin, WAV files) and `tandem-cli` ([`CliAccount`], with a stdin pipe for its control channel); plus
//! raw SIP helpers, and network namespaces with loss and delay ([`NetnsPair`], netem or the userspace
//! [`impair::ImpairBridge`]).
//!
//! Every peer runs as a child process in its own process group, with stdout/stderr captured to files in the test's
//! temporary directory; dropping its guard stops the whole group, and a failing test prints the tails of the logs.

pub mod baresip;
pub mod cli;
pub mod coturn;
pub mod desktop;
pub mod error;
pub mod impair;
pub mod kamailio;
pub mod lab;
pub mod linphone;
pub mod nat;
pub mod netns;
pub mod paths;
pub mod pipewire;
pub mod ports;
pub mod process;
pub mod sip;
pub mod sipp;
pub mod video;

pub use baresip::{
    Baresip, BaresipOptions, BaresipSource, BaresipVideo, BaresipVideoSource, BaresipVideoStats,
};
pub use cli::{CliAccount, CliOutput};
pub use error::{HarnessError, Result};
pub use kamailio::{Kamailio, KamailioOptions};
pub use lab::{LabOptions, LabServer};
pub use linphone::{Linphone, LinphoneOptions, LinphoneRegistrar};
pub use netns::NetnsPair;
pub use paths::{TestDir, bin_path, peers_dir};
pub use ports::{free_port, free_port_block};
pub use process::ChildGuard;
pub use sip::Transport;
pub use sipp::{Sipp, SippResult, SippUas};
