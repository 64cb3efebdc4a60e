//! Lab media relay (what rtpengine does for Kamailio): anchors media of NATed non-ICE peers, IPv4 <-> IPv6.
