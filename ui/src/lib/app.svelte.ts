// The ui's state: what the Rust side reported, kept current from its events, and the typed
// commands. One instance per window, created over a Transport.

import type { AccountInfo } from "./bindings/AccountInfo";
import type { ChatMessage } from "./bindings/ChatMessage";
import type { Contact } from "./bindings/Contact";
import type { MyPresence } from "./bindings/MyPresence";
import type { PresenceStatus } from "./bindings/PresenceStatus";
import type { RosterEntry } from "./bindings/RosterEntry";
import type { Voicemail } from "./bindings/Voicemail";
import type { Watcher } from "./bindings/Watcher";
import type { AppEvent } from "./bindings/AppEvent";
import type { CallInfo } from "./bindings/CallInfo";
import type { DeviceChoice } from "./bindings/DeviceChoice";
import type { Devices } from "./bindings/Devices";
import type { Failure } from "./bindings/Failure";
import type { HistoryEntry } from "./bindings/HistoryEntry";
import type { LabInfo } from "./bindings/LabInfo";
import type { NewAccount } from "./bindings/NewAccount";
import type { Quality } from "./bindings/Quality";
import type { CertificateDetails } from "./bindings/CertificateDetails";
import type { FileTransfer } from "./bindings/FileTransfer";
import type { Cameras } from "./bindings/Cameras";
import type { VideoFigures } from "./bindings/VideoFigures";
import type { CallLink } from "./bindings/CallLink";
import type { Transport } from "./transport";

/** The key of a conversation: account and peer address (scheme, user, host; lowercased). */
export function peerKey(accountId: string, peer: string): string {
  let p = peer.trim();
  const lt = p.indexOf("<");
  const gt = p.lastIndexOf(">");
  if (lt >= 0 && gt > lt) p = p.slice(lt + 1, gt);
  p = p.split(/[;?]/)[0];
  return `${accountId}|${p.toLowerCase()}`;
}

/** One conversation: the messages exchanged with one peer on one account. */
export interface Conversation {
  key: string;
  accountId: string;
  peer: string;
  messages: ChatMessage[];
  unread: number;
  lastAtMs: number;
}

/** The app as the ui sees it. */
export class AppModel {
  accounts = $state<AccountInfo[]>([]);
  calls = $state<CallInfo[]>([]);
  quality = $state<Record<string, Quality>>({});
  history = $state<HistoryEntry[]>([]);
  lab = $state<LabInfo | null>(null);
  error = $state<Failure | null>(null);
  notices = $state<string[]>([]);
  loaded = $state(false);
  messages = $state<ChatMessage[]>([]);
  /** Conversation keys whose peer is typing now. */
  typing = $state<Record<string, boolean>>({});
  contacts = $state<Contact[]>([]);
  watchers = $state<Watcher[]>([]);
  myPresence = $state<Record<string, MyPresence>>({});
  voicemail = $state<Record<string, Voicemail>>({});
  /** Conference rosters by call id. */
  roster = $state<Record<string, RosterEntry[]>>({});
  /** Files sent and received, oldest first. */
  transfers = $state<FileTransfer[]>([]);
  /** The video sources and the one new video calls use (loaded on demand). */
  cameras = $state<Cameras | null>(null);
  /** Video figures by call id. */
  videoFigures = $state<Record<string, VideoFigures>>({});
  /** A call a sip:/tel: link asks for, waiting for the user to confirm it. */
  callLink = $state<CallLink | null>(null);
  private stop: (() => void) | null = null;

  constructor(readonly transport: Transport) {}

  /** Subscribes to events and loads the current state. */
  async start(): Promise<void> {
    this.stop = this.transport.listen((e) => this.apply(e));
    const [accounts, calls, history, messages, contacts, watchers, presence, voicemail, transfers] = await Promise.all([
      this.transport.invoke<AccountInfo[]>("list_accounts"),
      this.transport.invoke<CallInfo[]>("list_calls"),
      this.transport.invoke<HistoryEntry[]>("history"),
      this.transport.invoke<ChatMessage[]>("list_messages"),
      this.transport.invoke<Contact[]>("list_contacts"),
      this.transport.invoke<Watcher[]>("list_watchers"),
      this.transport.invoke<MyPresence[]>("my_presence"),
      this.transport.invoke<Voicemail[]>("list_voicemail"),
      this.transport.invoke<FileTransfer[]>("list_transfers"),
    ]);
    this.accounts = accounts;
    this.calls = calls;
    this.history = history;
    this.messages = messages ?? [];
    this.contacts = contacts ?? [];
    this.watchers = watchers ?? [];
    this.transfers = transfers ?? [];
    for (const p of presence ?? []) this.myPresence[p.accountId] = p;
    for (const v of voicemail ?? []) this.voicemail[v.accountId] = v;
    // A link that opened the app arrived before we listened.
    const link = await this.transport.invoke<CallLink | null>("take_link");
    if (link) this.callLink = link;
    this.loaded = true;
  }

  /** Stops following events. */
  close(): void {
    this.stop?.();
  }

  /** Applies one event from the Rust side. */
  apply(event: AppEvent): void {
    switch (event.type) {
      case "accountsChanged":
        this.accounts = event.accounts;
        break;
      case "registration":
        this.accounts = this.accounts.map((a) =>
          a.id === event.accountId ? { ...a, registration: event.state } : a,
        );
        break;
      case "call": {
        const call = event.call;
        if (call.phase === "ended") {
          this.calls = this.calls.filter((c) => c.id !== call.id);
          delete this.quality[call.id];
          delete this.roster[call.id];
          delete this.videoFigures[call.id];
          void this.refreshHistory();
        } else if (this.calls.some((c) => c.id === call.id)) {
          this.calls = this.calls.map((c) => (c.id === call.id ? call : c));
        } else {
          this.calls = [...this.calls, call];
        }
        break;
      }
      case "quality":
        this.quality = { ...this.quality, [event.callId]: event.quality };
        break;
      case "notice":
        this.notices = [...this.notices.slice(-4), event.message];
        break;
      case "dtmf":
        break;
      case "video":
        this.videoFigures = { ...this.videoFigures, [event.callId]: event.figures };
        break;
      case "message": {
        const m = event.message;
        const i = this.messages.findIndex((x) => x.id === m.id);
        if (i >= 0) this.messages[i] = m;
        else this.messages = [...this.messages, m];
        if (m.direction === "incoming") this.typing = { ...this.typing, [peerKey(m.accountId, m.peer)]: false };
        break;
      }
      case "composing":
        this.typing = { ...this.typing, [peerKey(event.accountId, event.peer)]: event.active };
        break;
      case "contact": {
        const c = event.contact;
        const i = this.contacts.findIndex((x) => x.accountId === c.accountId && x.uri === c.uri);
        if (i >= 0) this.contacts[i] = c;
        else this.contacts = [...this.contacts, c];
        break;
      }
      case "contactRemoved":
        this.contacts = this.contacts.filter((c) => !(c.accountId === event.accountId && c.uri === event.uri));
        break;
      case "watchers":
        this.watchers = [...this.watchers.filter((w) => w.accountId !== event.accountId), ...event.watchers];
        break;
      case "myPresence":
        this.myPresence = { ...this.myPresence, [event.presence.accountId]: event.presence };
        break;
      case "roster":
        this.roster = { ...this.roster, [event.callId]: event.participants };
        break;
      case "fileTransfer": {
        const f = event.transfer;
        const i = this.transfers.findIndex((x) => x.id === f.id);
        if (i >= 0) this.transfers[i] = f;
        else this.transfers = [...this.transfers, f];
        break;
      }
      case "voicemail":
        this.voicemail = { ...this.voicemail, [event.voicemail.accountId]: event.voicemail };
        break;
      case "callLink":
        this.callLink = event.link;
        break;
    }
  }

  /** Conversations, most recent first. */
  get conversations(): Conversation[] {
    const byKey = new Map<string, Conversation>();
    for (const m of this.messages) {
      const key = peerKey(m.accountId, m.peer);
      let c = byKey.get(key);
      if (!c) {
        c = { key, accountId: m.accountId, peer: m.peer, messages: [], unread: 0, lastAtMs: 0 };
        byKey.set(key, c);
      }
      c.messages.push(m);
      if (m.status === "unread") c.unread += 1;
      c.lastAtMs = Math.max(c.lastAtMs, m.atMs);
    }
    // A file offered or sent makes a conversation too; an offer waiting for an answer counts
    // as unread.
    for (const f of this.transfers) {
      const key = peerKey(f.accountId, f.peer);
      let c = byKey.get(key);
      if (!c) {
        c = { key, accountId: f.accountId, peer: f.peer, messages: [], unread: 0, lastAtMs: 0 };
        byKey.set(key, c);
      }
      if (f.state === "offered") c.unread += 1;
      c.lastAtMs = Math.max(c.lastAtMs, f.atMs);
    }
    return [...byKey.values()].sort((a, b) => b.lastAtMs - a.lastAtMs);
  }

  /** The file transfers of a conversation. */
  transfersWith(key: string): FileTransfer[] {
    return this.transfers.filter((f) => peerKey(f.accountId, f.peer) === key);
  }

  /** Forgets the link's call (placed or dismissed), here and on the Rust side. */
  dismissLink(): void {
    this.callLink = null;
    void this.transport.invoke("take_link").catch(() => undefined);
  }

  /** Watchers waiting for us to allow or block them. */
  get pendingWatchers(): Watcher[] {
    return this.watchers.filter((w) => w.status === "pending" || w.status === "waiting");
  }

  private async run<T>(p: Promise<T>): Promise<T | undefined> {
    try {
      return await p;
    } catch (e) {
      this.error = e as Failure;
      return undefined;
    }
  }

  async refreshHistory(): Promise<void> {
    const h = await this.run(this.transport.invoke<HistoryEntry[]>("history"));
    if (h) this.history = h;
  }

  /** Starts the bundled lab server and signs in; failures land in `error`. */
  async startLab(): Promise<LabInfo | undefined> {
    const info = await this.run(this.transport.invoke<LabInfo>("start_bundled_lab"));
    if (info) this.lab = info;
    return info;
  }

  /** Tests an account without saving it; resolves to the failure, or null when it works. */
  async testConnection(account: NewAccount): Promise<Failure | null> {
    try {
      await this.transport.invoke<number>("test_connection", account as unknown as Record<string, unknown>);
      return null;
    } catch (e) {
      return e as Failure;
    }
  }

  async addAccount(account: NewAccount): Promise<AccountInfo | undefined> {
    const info = await this.run(
      this.transport.invoke<AccountInfo>("add_account", account as unknown as Record<string, unknown>),
    );
    if (info) await this.run(this.transport.invoke<number>("register", { accountId: info.id }));
    return info;
  }

  /** Trusts a CA certificate (PEM) from now on; resolves to its details, or the failure. */
  async trustCa(pem: string): Promise<CertificateDetails | Failure> {
    try {
      return await this.transport.invoke<CertificateDetails>("trust_ca", { pem });
    } catch (e) {
      return e as Failure;
    }
  }

  register = (accountId: string) => this.run(this.transport.invoke<number>("register", { accountId }));
  unregister = (accountId: string) => this.run(this.transport.invoke<null>("unregister", { accountId }));
  removeAccount = (accountId: string) => this.run(this.transport.invoke<null>("remove_account", { accountId }));
  call = (accountId: string, target: string, video = false) =>
    this.run(this.transport.invoke<CallInfo>("call", video ? { accountId, target, video } : { accountId, target }));
  answer = (callId: string, video = false) =>
    this.run(this.transport.invoke<null>("answer", video ? { callId, video } : { callId }));
  /** Upgrades a call to video or takes its video away (a re-INVITE). */
  setVideo = (callId: string, on: boolean) => this.run(this.transport.invoke<null>("set_video", { callId, on }));
  /** "Not now" to the peer's video: it keeps showing, we send nothing, the question goes. */
  dismissVideoOffer = (callId: string) => this.run(this.transport.invoke<null>("dismiss_video_offer", { callId }));
  /** Sends a call's video from another camera, or stops sending pictures (null). */
  setCamera = (callId: string, camera: string | null) =>
    this.run(this.transport.invoke<null>("set_camera", { callId, camera }));
  /** Loads the cameras into `cameras`. */
  async loadCameras(): Promise<Cameras | undefined> {
    const c = await this.run(this.transport.invoke<Cameras>("list_cameras"));
    if (c && Array.isArray(c.available)) {
      this.cameras = c;
      return c;
    }
    return undefined;
  }
  /** The camera of new video calls (null: receive video only). */
  async chooseCamera(camera: string | null): Promise<void> {
    const done = await this.run(this.transport.invoke<null>("choose_camera", { camera }).then(() => true));
    if (done && this.cameras) this.cameras = { ...this.cameras, current: camera };
  }
  decline = (callId: string) => this.run(this.transport.invoke<null>("decline", { callId }));
  hangup = (callId: string) => this.run(this.transport.invoke<null>("hangup", { callId }));
  hold = (callId: string) => this.run(this.transport.invoke<null>("hold", { callId }));
  resume = (callId: string) => this.run(this.transport.invoke<null>("resume", { callId }));
  mute = (callId: string, muted: boolean) => this.run(this.transport.invoke<null>("mute", { callId, muted }));
  sendDtmf = (callId: string, digits: string) =>
    this.run(this.transport.invoke<null>("send_dtmf", { callId, digits }));
  transfer = (callId: string, target: string) =>
    this.run(this.transport.invoke<null>("transfer", { callId, target }));
  listDevices = () => this.run(this.transport.invoke<Devices>("list_devices"));
  switchDevices = (choice: DeviceChoice) =>
    this.run(this.transport.invoke<null>("switch_devices", choice as unknown as Record<string, unknown>));

  sendMessage = (accountId: string, to: string, text: string) =>
    this.run(this.transport.invoke<ChatMessage>("send_message", { accountId, to, text }));
  composing = (accountId: string, peer: string, active: boolean) =>
    this.transport.invoke<null>("composing", { accountId, peer, active }).catch(() => null);
  markRead = (accountId: string, peer: string) =>
    this.run(this.transport.invoke<number>("mark_read", { accountId, peer, active: false }));
  addContact = (accountId: string, uri: string, name: string | null) =>
    this.run(this.transport.invoke<Contact>("add_contact", { accountId, uri, name }));
  removeContact = (accountId: string, uri: string) =>
    this.run(this.transport.invoke<null>("remove_contact", { accountId, uri, name: null }));
  allowWatcher = (accountId: string, uri: string) =>
    this.run(this.transport.invoke<null>("allow_watcher", { accountId, uri }));
  blockWatcher = (accountId: string, uri: string) =>
    this.run(this.transport.invoke<null>("block_watcher", { accountId, uri }));
  setPresence = (accountId: string, status: PresenceStatus, note: string | null) =>
    this.run(this.transport.invoke<null>("set_presence", { accountId, status, note }));
  /** Sends a file picked in the ui (its contents travel base64-encoded). */
  sendFileData = (accountId: string, to: string, name: string, dataBase64: string) =>
    this.run(this.transport.invoke<FileTransfer>("send_file", { accountId, to, name, dataBase64, path: null }));
  acceptFile = (transferId: string) => this.run(this.transport.invoke<null>("accept_file", { transferId }));
  declineFile = (transferId: string) => this.run(this.transport.invoke<null>("decline_file", { transferId }));
  openFolder = (transferId: string) => this.run(this.transport.invoke<string>("open_folder", { transferId }));
  /** Joins conference room `room` (`conf-<room>@<domain>`), sending `pin` once it answers. */
  joinConference = (accountId: string, room: string, pin: string | null) =>
    this.run(this.transport.invoke<CallInfo>("join_conference", { accountId, room, pin }));
  /** Calls the account's voicemail (the address from its message summary, else `voicemail`). */
  callVoicemail = (accountId: string) =>
    this.call(accountId, this.voicemail[accountId]?.voicemailUri || "voicemail");

  /** The first signed-in account, else the first account. */
  get defaultAccount(): AccountInfo | undefined {
    return this.accounts.find((a) => a.registration.state === "registered") ?? this.accounts[0];
  }
}
