//! Module under construction (audio-calls issue).
