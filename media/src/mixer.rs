//! Audio conference mixer: N participants, mix-minus, per-participant rates and queues.
