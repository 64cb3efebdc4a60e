//! A NAT topology of network namespaces: a public network with the lab server, LANs behind NAT routers, an IPv6-only host.
