// Every string the ui shows, in one table per language. Components call t("key", { name: value }).

const en = {
  appName: "Tandem",
  "wizard.title": "Welcome to Tandem",
  "wizard.intro": "Choose how to start. You can add more accounts later.",
  "wizard.lab": "Use the bundled lab server",
  "wizard.labHint": "Starts a SIP server inside the app with demo accounts alice, bob and carol, and signs you in as alice.",
  "wizard.provider": "Sign in to my SIP provider",
  "wizard.providerHint": "Use the address and password your provider or lab gave you.",
  "wizard.starting": "Starting the lab server…",
  "account.address": "SIP address",
  "account.addressHint": "user@domain, for example alice@example.org",
  "account.password": "Password",
  "account.proxy": "Outbound proxy (optional)",
  "account.transport": "Transport",
  "account.srtp": "Media encryption",
  "account.srtp.off": "Off",
  "account.srtp.optional": "When the other side can",
  "account.srtp.mandatory": "Always (refuse plain calls)",
  "account.test": "Test connection",
  "account.testing": "Testing…",
  "account.testOk": "Connection works: the server accepted the account.",
  "account.save": "Save and sign in",
  "account.back": "Back",
  "account.badAddress": "Enter the address as user@domain.",
  "accounts.title": "Accounts",
  "accounts.signIn": "Sign in",
  "accounts.signOut": "Sign out",
  "accounts.remove": "Remove",
  "reg.unregistered": "Signed out",
  "reg.registering": "Signing in…",
  "reg.registered": "Signed in",
  "reg.failed": "Not signed in",
  "dialer.title": "Call",
  "dialer.from": "Call from",
  "dialer.target": "Number or SIP address",
  "dialer.call": "Call",
  "incoming.title": "Incoming call",
  "incoming.from": "{remote} is calling",
  "incoming.answer": "Answer",
  "incoming.decline": "Decline",
  "call.dialing": "Calling…",
  "call.ringing": "Ringing…",
  "call.active": "In call",
  "call.ended": "Call ended",
  "call.hangup": "Hang up",
  "call.mute": "Mute",
  "call.unmute": "Unmute",
  "call.hold": "Hold",
  "call.resume": "Resume",
  "call.keypad": "Keypad",
  "call.transfer": "Transfer",
  "call.transferTo": "Transfer to",
  "call.transferGo": "Transfer",
  "call.heldByRemote": "The other party put you on hold",
  "call.timer": "Call time",
  "quality.label": "Call quality",
  "quality.secure": "Encrypted",
  "quality.notSecure": "Not encrypted",
  "quality.detail": "{codec}, loss {loss} %, jitter {jitter} ms",
  "devices.title": "Audio devices",
  "devices.capture": "Microphone",
  "devices.playback": "Speaker",
  "devices.apply": "Use these devices",
  "history.title": "History",
  "history.empty": "No calls yet.",
  "history.answered": "Answered",
  "history.missed": "Missed",
  "history.declined": "Declined",
  "history.failed": "Not connected",
  "theme.toggle": "Switch between light and dark theme",
  "error.title": "Something went wrong",
  "error.dismiss": "Dismiss",
  "lab.running": "Lab server {domain} at {udp}",
  "lab.users": "Demo accounts",
} as const;

/** A key of the strings table. */
export type StringKey = keyof typeof en;

const tables: Record<string, Record<StringKey, string>> = { en };
let current: Record<StringKey, string> = en;

/** Picks the language (falls back to English). */
export function setLanguage(lang: string): void {
  current = tables[lang.split("-")[0]] ?? en;
}

/** The string for `key`, with `{name}` placeholders filled from `params`. */
export function t(key: StringKey, params: Record<string, string | number> = {}): string {
  const text = current[key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name: string) => String(params[name] ?? `{${name}}`));
}
