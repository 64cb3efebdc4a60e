//! `tandem-cli devices`: one `device …` line per audio device the host offers.

use tandem_media::device::list_devices;

use crate::output::{Event, Exit};

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Prints `device name=… input=yes|no output=yes|no default=yes|no host=… description=…` for each device, then
/// `devices count=N`; also the pseudo-devices every call accepts (`null`, `tone:HZ`, WAV paths) on stderr.
pub fn list() -> Exit {
    let devices = list_devices();
    for d in &devices {
        Event::new("device")
            .kv("name", &d.name)
            .kv("input", yes_no(d.input))
            .kv("output", yes_no(d.output))
            .kv("default", yes_no(d.default))
            .kv("host", &d.host)
            .kv("description", &d.description)
            .emit();
    }
    Event::new("devices").kv("count", devices.len()).emit();
    eprintln!(
        "tandem-cli: besides these, --device takes `default`, `null` (silence), `tone:HZ` and WAV paths"
    );
    Exit::Success
}
