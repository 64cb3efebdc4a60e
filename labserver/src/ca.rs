//! The lab certificate authority and the server certificate it issues.
