-- RFC 3840 feature tags of a binding's Contact (e.g. +sip.ice), postgres flavour (keep in step).
ALTER TABLE bindings ADD COLUMN features TEXT;
