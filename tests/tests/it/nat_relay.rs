//! NAT acceptance (issue 4): nat_relay.
