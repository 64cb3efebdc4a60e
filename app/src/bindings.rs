//! The TypeScript bindings of every bridge type, generated with ts-rs into
//! `ui/src/lib/bindings/` (one file per type plus `commands.ts`).

use std::path::Path;

use ts_rs::{Config, TS};

use crate::commands::{AccountArg, COMMANDS, CallArg, DtmfArg, MuteArg, TransferArg};
use crate::types::*;

/// The header of every generated file.
const HEADER: &str =
    "// Generated from the Rust types in app/src (`cargo xtask bindings`); do not edit.\n";

fn one<T: TS + 'static>(
    cfg: &Config,
    out: &mut Vec<(String, String)>,
) -> Result<(), ts_rs::ExportError> {
    let text = T::export_to_string(cfg)?;
    out.push((format!("{}.ts", T::name(cfg)), format!("{HEADER}{text}")));
    Ok(())
}

/// Every bindings file as (file name, contents), in a stable order.
pub fn generate() -> Result<Vec<(String, String)>, ts_rs::ExportError> {
    let cfg = Config::new().with_large_int("number");
    let mut out = Vec::new();
    one::<TransportKind>(&cfg, &mut out)?;
    one::<SrtpMode>(&cfg, &mut out)?;
    one::<AccountSettings>(&cfg, &mut out)?;
    one::<NewAccount>(&cfg, &mut out)?;
    one::<FailureKind>(&cfg, &mut out)?;
    one::<CertificateTrouble>(&cfg, &mut out)?;
    one::<CertificateDetails>(&cfg, &mut out)?;
    one::<CertificateProblem>(&cfg, &mut out)?;
    one::<Failure>(&cfg, &mut out)?;
    one::<TrustArg>(&cfg, &mut out)?;
    one::<RegistrationState>(&cfg, &mut out)?;
    one::<AccountInfo>(&cfg, &mut out)?;
    one::<Direction>(&cfg, &mut out)?;
    one::<CallPhase>(&cfg, &mut out)?;
    one::<Quality>(&cfg, &mut out)?;
    one::<MediaPathKind>(&cfg, &mut out)?;
    one::<MediaPath>(&cfg, &mut out)?;
    one::<CallInfo>(&cfg, &mut out)?;
    one::<AudioDevice>(&cfg, &mut out)?;
    one::<DeviceChoice>(&cfg, &mut out)?;
    one::<Devices>(&cfg, &mut out)?;
    one::<HistoryOutcome>(&cfg, &mut out)?;
    one::<HistoryEntry>(&cfg, &mut out)?;
    one::<LabUser>(&cfg, &mut out)?;
    one::<LabInfo>(&cfg, &mut out)?;
    one::<CallRequest>(&cfg, &mut out)?;
    one::<MessageStatus>(&cfg, &mut out)?;
    one::<ChatMessage>(&cfg, &mut out)?;
    one::<SendMessage>(&cfg, &mut out)?;
    one::<PeerArg>(&cfg, &mut out)?;
    one::<PresenceStatus>(&cfg, &mut out)?;
    one::<WatchState>(&cfg, &mut out)?;
    one::<Contact>(&cfg, &mut out)?;
    one::<ContactArg>(&cfg, &mut out)?;
    one::<Watcher>(&cfg, &mut out)?;
    one::<WatcherArg>(&cfg, &mut out)?;
    one::<MyPresence>(&cfg, &mut out)?;
    one::<Voicemail>(&cfg, &mut out)?;
    one::<RosterEntry>(&cfg, &mut out)?;
    one::<TransferState>(&cfg, &mut out)?;
    one::<FileTransfer>(&cfg, &mut out)?;
    one::<SendFile>(&cfg, &mut out)?;
    one::<FileArg>(&cfg, &mut out)?;
    one::<JoinConference>(&cfg, &mut out)?;
    one::<VideoSize>(&cfg, &mut out)?;
    one::<VideoInfo>(&cfg, &mut out)?;
    one::<CameraKind>(&cfg, &mut out)?;
    one::<Camera>(&cfg, &mut out)?;
    one::<Cameras>(&cfg, &mut out)?;
    one::<CameraChoice>(&cfg, &mut out)?;
    one::<VideoArg>(&cfg, &mut out)?;
    one::<CameraArg>(&cfg, &mut out)?;
    one::<AnswerArg>(&cfg, &mut out)?;
    one::<VideoFigures>(&cfg, &mut out)?;
    one::<crate::links::CallLink>(&cfg, &mut out)?;
    one::<crate::links::LinkArg>(&cfg, &mut out)?;
    one::<AppEvent>(&cfg, &mut out)?;
    one::<AccountArg>(&cfg, &mut out)?;
    one::<CallArg>(&cfg, &mut out)?;
    one::<MuteArg>(&cfg, &mut out)?;
    one::<DtmfArg>(&cfg, &mut out)?;
    one::<TransferArg>(&cfg, &mut out)?;
    let names: Vec<String> = COMMANDS.iter().map(|c| format!("  | \"{c}\"")).collect();
    out.push((
        "commands.ts".to_owned(),
        format!(
            "{HEADER}\n/** Every command the Rust side answers. */\nexport type Command =\n{};\n",
            names.join("\n")
        ),
    ));
    Ok(out)
}

/// Writes the bindings into `dir` and removes stale generated files; returns the files that changed.
pub fn write(dir: &Path) -> std::io::Result<Vec<String>> {
    let files = generate().map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let mut changed = Vec::new();
    for (name, text) in &files {
        let path = dir.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            std::fs::write(&path, text)?;
            changed.push(name.clone());
        }
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".ts") && !files.iter().any(|(n, _)| *n == name) {
            std::fs::remove_file(entry.path())?;
            changed.push(name);
        }
    }
    Ok(changed)
}
