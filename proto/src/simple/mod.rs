//! SIMPLE document formats: PIDF/RPID, watcher-info, resource-lists, pres-rules, CPIM, IMDN, is-composing, RLMI (filled in by the SIMPLE issue).
