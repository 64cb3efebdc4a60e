//! SIP request methods.

use std::fmt;
use std::str::FromStr;

use super::error::ParseError;
use super::scan::is_token;

/// A SIP request method; methods are case-sensitive tokens (RFC 3261 §7.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Method {
    /// INVITE (RFC 3261).
    Invite,
    /// ACK (RFC 3261).
    Ack,
    /// BYE (RFC 3261).
    Bye,
    /// CANCEL (RFC 3261).
    Cancel,
    /// REGISTER (RFC 3261).
    Register,
    /// OPTIONS (RFC 3261).
    Options,
    /// INFO (RFC 6086).
    Info,
    /// UPDATE (RFC 3311).
    Update,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// PUBLISH (RFC 3903).
    Publish,
    /// MESSAGE (RFC 3428).
    Message,
    /// REFER (RFC 3515).
    Refer,
    /// Any other method token, as written.
    Extension(String),
}

impl Method {
    /// The method token as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Publish => "PUBLISH",
            Method::Message => "MESSAGE",
            Method::Refer => "REFER",
            Method::Extension(s) => s,
        }
    }
}

impl FromStr for Method {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "PUBLISH" => Method::Publish,
            "MESSAGE" => Method::Message,
            "REFER" => Method::Refer,
            other if is_token(other) => Method::Extension(other.to_string()),
            other => return Err(ParseError::Method(other.chars().take(64).collect())),
        })
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!("INVITE".parse::<Method>().unwrap(), Method::Invite);
        assert_eq!(
            "invite".parse::<Method>().unwrap(),
            Method::Extension("invite".into())
        );
        assert!("IN VITE".parse::<Method>().is_err());
        assert!("".parse::<Method>().is_err());
        let m: Method = "!interesting-Method0123456789_*+`.%indeed'~"
            .parse()
            .unwrap();
        assert_eq!(m.to_string(), "!interesting-Method0123456789_*+`.%indeed'~");
    }
}
