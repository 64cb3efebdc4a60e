//! NAT acceptance (issue 4): nat_coturn_client.
