//! The command table: every command by name, with JSON arguments and a JSON result. The
//! desktop and mobile shells and the dev server all call [`dispatch`], so a command is defined
//! once, here.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::explain::failure;
use crate::state::AppState;
use crate::types::*;

/// The arguments of commands that name one account.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct AccountArg {
    /// The account id (`user@domain`).
    pub account_id: String,
}

/// The arguments of commands that name one call.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct CallArg {
    /// The call id.
    pub call_id: String,
}

/// The arguments of `mute`.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct MuteArg {
    /// The call id.
    pub call_id: String,
    /// Mute (true) or unmute (false).
    pub muted: bool,
}

/// The arguments of `send_dtmf`.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct DtmfArg {
    /// The call id.
    pub call_id: String,
    /// Digits `0-9*#A-D`.
    pub digits: String,
}

/// The arguments of `transfer`.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
#[serde(rename_all = "camelCase")]
pub struct TransferArg {
    /// The call id.
    pub call_id: String,
    /// Where to send the other party.
    pub target: String,
}

/// Every command name [`dispatch`] knows, for the shells and for the ui's typed wrapper.
pub const COMMANDS: &[&str] = &[
    "list_accounts",
    "add_account",
    "remove_account",
    "register",
    "unregister",
    "test_connection",
    "call",
    "answer",
    "decline",
    "hangup",
    "hold",
    "resume",
    "mute",
    "send_dtmf",
    "transfer",
    "list_calls",
    "list_devices",
    "switch_devices",
    "history",
    "start_bundled_lab",
    "list_messages",
    "send_message",
    "composing",
    "mark_read",
    "list_contacts",
    "add_contact",
    "remove_contact",
    "list_watchers",
    "allow_watcher",
    "block_watcher",
    "my_presence",
    "set_presence",
    "list_voicemail",
    "trust_ca",
    "list_trusted_cas",
    "list_transfers",
    "send_file",
    "accept_file",
    "decline_file",
    "open_folder",
    "join_conference",
    "list_cameras",
    "choose_camera",
    "set_video",
    "set_camera",
    "dismiss_video_offer",
    "open_link",
    "take_link",
];

fn args<T: DeserializeOwned>(command: &str, value: Value) -> Result<T, Failure> {
    serde_json::from_value(value).map_err(|e| {
        failure(
            FailureKind::Other,
            format!("The app sent bad arguments to {command}."),
            e.to_string(),
        )
    })
}

fn json<T: Serialize>(value: T) -> Result<Value, Failure> {
    serde_json::to_value(value).map_err(|e| {
        failure(
            FailureKind::Other,
            "An answer could not be encoded.",
            e.to_string(),
        )
    })
}

/// Runs `command` with JSON `arguments` (an object; `null` for none) on `state`.
pub async fn dispatch(state: &AppState, command: &str, arguments: Value) -> Result<Value, Failure> {
    match command {
        "list_accounts" => json(state.list_accounts()),
        "add_account" => json(state.add_account(args(command, arguments)?).await?),
        "remove_account" => {
            let a: AccountArg = args(command, arguments)?;
            json(state.remove_account(&a.account_id).await?)
        }
        "register" => {
            let a: AccountArg = args(command, arguments)?;
            json(state.register(&a.account_id).await?)
        }
        "unregister" => {
            let a: AccountArg = args(command, arguments)?;
            json(state.unregister(&a.account_id).await?)
        }
        "test_connection" => json(state.test_connection(args(command, arguments)?).await?),
        "call" => json(state.call(args(command, arguments)?).await?),
        "answer" => {
            let a: AnswerArg = args(command, arguments)?;
            json(
                state
                    .answer_with(&a.call_id, a.video.unwrap_or(false))
                    .await?,
            )
        }
        "decline" => {
            let a: CallArg = args(command, arguments)?;
            json(state.decline(&a.call_id)?)
        }
        "hangup" => {
            let a: CallArg = args(command, arguments)?;
            json(state.hangup(&a.call_id)?)
        }
        "hold" => {
            let a: CallArg = args(command, arguments)?;
            json(state.hold(&a.call_id).await?)
        }
        "resume" => {
            let a: CallArg = args(command, arguments)?;
            json(state.resume(&a.call_id).await?)
        }
        "mute" => {
            let a: MuteArg = args(command, arguments)?;
            json(state.mute(&a.call_id, a.muted)?)
        }
        "send_dtmf" => {
            let a: DtmfArg = args(command, arguments)?;
            json(state.send_dtmf(&a.call_id, &a.digits).await?)
        }
        "transfer" => {
            let a: TransferArg = args(command, arguments)?;
            json(state.transfer(&a.call_id, &a.target).await?)
        }
        "list_calls" => json(state.list_calls()),
        "list_devices" => json(state.list_devices().await),
        "switch_devices" => json(state.switch_devices(args(command, arguments)?).await?),
        "history" => json(state.history()),
        "start_bundled_lab" => json(state.start_bundled_lab().await?),
        "list_messages" => json(state.list_messages()),
        "send_message" => json(state.send_message(args(command, arguments)?).await?),
        "composing" => json(state.composing(args(command, arguments)?).await?),
        "mark_read" => json(state.mark_read(args(command, arguments)?).await?),
        "list_contacts" => json(state.list_contacts()),
        "add_contact" => json(state.add_contact(args(command, arguments)?).await?),
        "remove_contact" => json(state.remove_contact(args(command, arguments)?).await?),
        "list_watchers" => json(state.list_watchers()),
        "allow_watcher" => json(
            state
                .decide_watcher(args(command, arguments)?, true)
                .await?,
        ),
        "block_watcher" => json(
            state
                .decide_watcher(args(command, arguments)?, false)
                .await?,
        ),
        "my_presence" => json(state.my_presence()),
        "set_presence" => json(state.set_presence(args(command, arguments)?).await?),
        "list_voicemail" => json(state.list_voicemail()),
        "trust_ca" => {
            let a: TrustArg = args(command, arguments)?;
            json(state.trust_ca(&a.pem)?)
        }
        "list_trusted_cas" => json(state.list_trusted_cas()),
        "list_transfers" => json(state.list_transfers()),
        "send_file" => json(state.send_file(args(command, arguments)?).await?),
        "accept_file" => json(state.accept_file(args(command, arguments)?).await?),
        "decline_file" => json(state.decline_file(args(command, arguments)?)?),
        "open_folder" => json(state.open_folder(args(command, arguments)?)?),
        "join_conference" => json(state.join_conference(args(command, arguments)?).await?),
        "list_cameras" => json(state.list_cameras()),
        "choose_camera" => {
            let a: CameraChoice = args(command, arguments)?;
            json(state.choose_camera(a.camera.as_deref())?)
        }
        "set_video" => {
            let a: VideoArg = args(command, arguments)?;
            json(state.set_video(&a.call_id, a.on).await?)
        }
        "dismiss_video_offer" => {
            let a: CallArg = args(command, arguments)?;
            json(state.dismiss_video_offer(&a.call_id)?)
        }
        "set_camera" => {
            let a: CameraArg = args(command, arguments)?;
            json(state.set_camera(&a.call_id, a.camera.as_deref()).await?)
        }
        "open_link" => json(state.open_link(args(command, arguments)?)?),
        "take_link" => json(state.take_link()),
        other => Err(failure(
            FailureKind::Other,
            format!("Unknown command {other}."),
            other.to_owned(),
        )),
    }
}
