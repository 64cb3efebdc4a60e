//! ICE agent for a call's media: candidate gathering, connectivity checks, the selected path.
