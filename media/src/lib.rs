//! Tandem media: codecs, RTP, jitter buffer and mixing (built out by the audio-calls issue).
