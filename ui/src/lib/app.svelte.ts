// The ui's state: what the Rust side reported, kept current from its events, and the typed
// commands. One instance per window, created over a Transport.

import type { AccountInfo } from "./bindings/AccountInfo";
import type { AppEvent } from "./bindings/AppEvent";
import type { CallInfo } from "./bindings/CallInfo";
import type { DeviceChoice } from "./bindings/DeviceChoice";
import type { Devices } from "./bindings/Devices";
import type { Failure } from "./bindings/Failure";
import type { HistoryEntry } from "./bindings/HistoryEntry";
import type { LabInfo } from "./bindings/LabInfo";
import type { NewAccount } from "./bindings/NewAccount";
import type { Quality } from "./bindings/Quality";
import type { Transport } from "./transport";

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
  private stop: (() => void) | null = null;

  constructor(readonly transport: Transport) {}

  /** Subscribes to events and loads the current state. */
  async start(): Promise<void> {
    this.stop = this.transport.listen((e) => this.apply(e));
    const [accounts, calls, history] = await Promise.all([
      this.transport.invoke<AccountInfo[]>("list_accounts"),
      this.transport.invoke<CallInfo[]>("list_calls"),
      this.transport.invoke<HistoryEntry[]>("history"),
    ]);
    this.accounts = accounts;
    this.calls = calls;
    this.history = history;
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
    }
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

  register = (accountId: string) => this.run(this.transport.invoke<number>("register", { accountId }));
  unregister = (accountId: string) => this.run(this.transport.invoke<null>("unregister", { accountId }));
  removeAccount = (accountId: string) => this.run(this.transport.invoke<null>("remove_account", { accountId }));
  call = (accountId: string, target: string) =>
    this.run(this.transport.invoke<CallInfo>("call", { accountId, target }));
  answer = (callId: string) => this.run(this.transport.invoke<null>("answer", { callId }));
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

  /** The first signed-in account, else the first account. */
  get defaultAccount(): AccountInfo | undefined {
    return this.accounts.find((a) => a.registration.state === "registered") ?? this.accounts[0];
  }
}
