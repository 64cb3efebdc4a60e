//! The Tandem SIP user agent: accounts, registration, calls with audio.
//!
//! A [`UserAgent`] runs over one `tandem_net::Endpoint`. It registers accounts
//! ([`UserAgent::register`], refreshed in the background until
//! [`Registration::unregister`]), places calls ([`UserAgent::call`]), hands incoming
//! calls to the application as [`UaEvent::IncomingCall`] (also while another call is up:
//! call waiting), answers OPTIONS, and sends OPTIONS ([`UserAgent::options`]). Tags,
//! Call-IDs, branches and cnonces come from a seeded RNG ([`UaConfig::seed`]) so that test
//! runs are reproducible.
//!
//! Each [`Call`] negotiates SDP (RFC 3264) with the account's codec preference and SRTP
//! policy (SDES or DTLS-SRTP) and runs a `tandem_media` session on the devices of its
//! [`MediaOptions`]; it holds and resumes (re-INVITE or UPDATE, RFC 6337), sends and
//! receives DTMF (RFC 4733 or SIP INFO), transfers (REFER with Referred-By, Replaces for
//! attended transfers) and is transferred, plays early media, and reports quality.
//!
//! SIMPLE: page-mode instant messages ([`UserAgent::send_message`], [`UaEvent::Message`]) with
//! CPIM, IMDN and is-composing; a local SQLite [`History`]; presence publication
//! ([`UserAgent::publish`]) and subscriptions ([`UserAgent::subscribe_presence`],
//! [`UserAgent::subscribe_winfo`]); and an XCAP client ([`XcapClient`]) for buddy lists and
//! presence authorization rules.

mod account;
mod call;
pub mod conference;
mod config;
mod error;
pub mod history;
mod im;
mod media;
pub mod msrp;
pub mod mwi;
pub mod nat;
mod presence;
mod registration;
mod request;
mod subscription;
mod transfer;
mod ua;
mod video;
pub mod xcap;

pub use account::{Account, DEFAULT_EXPIRES, SrtpKeying, parse_proxy, parse_uri};
pub use call::{
    AnswerOptions, Call, CallEvent, CallOptions, EndReason, EndedBy, IncomingCall, OfferMethod,
};
pub use config::UaConfig;
pub use error::{Rejection, Result, UaError};
pub use history::History;
pub use im::{
    MESSAGE_CPIM, MessageOutcome, OutgoingMessage, ReceivedMessage, STORED_ID_HEADER, TEXT_PLAIN,
};
pub use media::{MediaInfo, MediaOptions, supported_codecs};
pub use presence::{
    ListBodyError, ListEvent, ListResource, ListState, ListSubscription, PIDF, PRESENCE_EXPIRES,
    PresenceEvent, PresenceSubscription, Publication, PublishEvent, SubscriptionState, WATCHERINFO,
    WinfoEvent, WinfoSubscription, parse_list_body,
};
pub use registration::{RegEvent, RegReason, RegisterOptions, Registration, default_instance};
/// Camera listing and capture (tandem-video's), for the apps' camera pickers.
pub use tandem_video::camera;
pub use transfer::ReplacesTarget;
pub use ua::{NetworkState, UaEvent, UaEvents, UserAgent, interface_addresses};
pub use video::{
    DEFAULT_CAMERA, DEFAULT_MAX_BITRATE_BPS, DEFAULT_PATTERN, FrameReceiver, VideoNotice,
    VideoOptions, VideoPolicy, VideoSourceSpec, VideoStats, parse_video_size,
};
pub use xcap::{XcapClient, XcapDocument, XcapError};

/// Re-exports of the protocol and network types that appear in this crate's API.
pub mod types {
    pub use tandem_media::device::DeviceSpec;
    pub use tandem_media::srtp::SrtpPolicy;
    pub use tandem_media::stats::CallQuality;
    pub use tandem_net::DnsConfig;
    pub use tandem_proto::msg::{Request, Response, Uri};
    /// The video types in this crate's API (decoded frames, SDP limits and negotiation).
    pub use tandem_proto::sdp::video::{NegotiatedVideo, VideoLimits};
    /// The SIMPLE formats used in this crate's API (PIDF, IMDN, is-composing, …).
    pub use tandem_proto::simple;
    pub use tandem_proto::transaction::TxConfig;
    pub use tandem_proto::{Flow, Transport};
    pub use tandem_video::frame::VideoFrame;
}
