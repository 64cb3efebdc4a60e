// Generated from the Rust types in app/src (`cargo xtask bindings`); do not edit.

/** Every command the Rust side answers. */
export type Command =
  | "list_accounts"
  | "add_account"
  | "remove_account"
  | "register"
  | "unregister"
  | "test_connection"
  | "call"
  | "answer"
  | "decline"
  | "hangup"
  | "hold"
  | "resume"
  | "mute"
  | "send_dtmf"
  | "transfer"
  | "list_calls"
  | "list_devices"
  | "switch_devices"
  | "history"
  | "start_bundled_lab";
