//! Video calls: tandem-cli against tandem-cli with VP8 and H.264, clean and under loss.
