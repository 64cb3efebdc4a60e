//! NAT acceptance (issue 4): nat_ipv6.
