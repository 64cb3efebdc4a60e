//! Wiring: endpoint, registrar, proxy and store into one running lab server.
