//! The integration test binary: one module per scenario, each against real peer processes
//! (Tandem's own binaries from `TANDEM_BIN_DIR`, see `cargo xtask test`).

// Runs > 10 minutes, mostly asleep: named to sort first, so libtest (name order) starts it first; `cargo xtask
// test` gives this binary one test thread more than the cores so it holds none the others need.
#[path = "nat_keepalive.rs"]
mod a0_nat_keepalive;
mod app_e2e;
mod audio_baresip;
mod audio_cli_cli;
mod audio_common;
mod audio_dtmf;
mod audio_hold;
mod audio_hostile;
mod audio_linphone;
mod audio_netem;
mod audio_srtp_tag;
mod audio_transfer;
mod baresip_lab;
mod common;
mod harness_selftest;
mod kamailio_cli;
mod lab_malformed;
mod lab_restart;
mod mediasrv_api;
mod mediasrv_conference;
mod mediasrv_ivr;
mod mediasrv_voicemail;
mod nat_calls;
mod nat_coturn_client;
mod nat_ipv6;
mod nat_relay;
mod nat_turn;
mod simple_kamailio;
mod simple_message;
mod simple_msrp;
mod simple_presence;
mod simple_presence_interop;
mod sipp_lab;
mod video_baresip;
mod video_camera;
mod video_loss;
mod video_peer_added;
