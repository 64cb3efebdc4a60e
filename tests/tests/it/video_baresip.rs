//! Video calls: tandem-cli against baresip (vp8 + fakevideo) through the lab.
