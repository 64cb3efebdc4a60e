import { fireEvent, screen, within } from "@testing-library/svelte";
import { flushSync } from "svelte";
import { describe, expect, it } from "vitest";
import { AppModel, peerKey } from "../lib/app.svelte";
import type { AccountInfo } from "../lib/bindings/AccountInfo";
import type { ChatMessage } from "../lib/bindings/ChatMessage";
import type { Contact } from "../lib/bindings/Contact";
import { TestTransport } from "../lib/test-transport";
import { setup } from "./test-support";

const alice: AccountInfo = {
  id: "alice@tandem.lab",
  settings: {
    user: "alice", domain: "tandem.lab", authUser: null, displayName: null, proxy: "127.0.0.1:5060",
    transport: "udp", srtp: "off", expires: 600, lab: true,
  },
  hasPassword: true,
  registration: { state: "registered", expires: 600 },
};

function msg(partial: Partial<ChatMessage>): ChatMessage {
  return {
    id: "m1", accountId: alice.id, peer: "sip:bob@tandem.lab", direction: "incoming", text: "hi",
    atMs: Date.now(), status: "unread", error: null, ...partial,
  };
}

function contact(partial: Partial<Contact>): Contact {
  return {
    accountId: alice.id, uri: "sip:bob@tandem.lab", name: "Bob", status: "unknown", note: null,
    watch: "subscribing", ...partial,
  };
}

describe("conversations", () => {
  it("groups messages by peer regardless of parameters and brackets", () => {
    expect(peerKey("a", "<sip:Bob@tandem.lab>;tag=x")).toBe(peerKey("a", "sip:bob@tandem.lab"));
    expect(peerKey("a", "sip:bob@tandem.lab")).not.toBe(peerKey("b", "sip:bob@tandem.lab"));
  });

  it("counts unread messages on the tab and marks them read when opened", async () => {
    const transport = new TestTransport({
      list_accounts: [alice],
      list_messages: [msg({ id: "m1" }), msg({ id: "m2", text: "are you there?" })],
      mark_read: 2,
    });
    await setup(transport);
    const chatTab = screen.getByRole("tab", { name: /Chat/ });
    expect(chatTab).toHaveTextContent("2");
    await fireEvent.click(chatTab);
    await fireEvent.click(screen.getByRole("button", { name: /sip:bob@tandem.lab/ }));
    expect(screen.getByText("are you there?")).toBeInTheDocument();
    expect(transport.sent.find((s) => s.command === "mark_read")?.args).toMatchObject({
      accountId: alice.id,
      peer: "sip:bob@tandem.lab",
    });
  });

  it("sends a message, shows the typing indicator and the delivery marks", async () => {
    const sent = msg({ id: "o1", direction: "outgoing", text: "Hello Bob", status: "sending" });
    const transport = new TestTransport({ list_accounts: [alice], send_message: { ...sent, status: "sent" } });
    await setup(transport);
    await fireEvent.click(screen.getByRole("tab", { name: /Chat/ }));
    await fireEvent.input(screen.getByTestId("chat-new-to"), { target: { value: "bob" } });
    await fireEvent.submit(screen.getByTestId("chat-new-to").closest("form") as HTMLFormElement);
    const input = screen.getByTestId("chat-input");
    await fireEvent.input(input, { target: { value: "Hello Bob" } });
    expect(transport.sent.find((s) => s.command === "composing")?.args).toMatchObject({ peer: "sip:bob@tandem.lab", active: true });
    await fireEvent.submit(input.closest("form") as HTMLFormElement);
    expect(transport.sent.find((s) => s.command === "send_message")?.args).toEqual({
      accountId: alice.id,
      to: "sip:bob@tandem.lab",
      text: "Hello Bob",
    });
    transport.emit({ type: "message", message: sent });
    transport.emit({ type: "composing", accountId: alice.id, peer: "<sip:bob@tandem.lab>", active: true });
    flushSync();
    expect(screen.getByTestId("message-status")).toHaveTextContent("Sending");
    expect(screen.getByTestId("typing")).toHaveTextContent("is typing");
    transport.emit({ type: "message", message: { ...sent, status: "displayed" } });
    transport.emit({ type: "message", message: msg({ id: "in1", text: "Got it" }) });
    flushSync();
    expect(screen.getByTestId("message-status")).toHaveTextContent("Read");
    expect(screen.queryByTestId("typing")).toBeNull();
    expect(screen.getAllByTestId("message-incoming")[0]).toHaveTextContent("Got it");
  });

  it("shows why a message failed", async () => {
    const transport = new TestTransport({
      list_accounts: [alice],
      list_messages: [msg({ id: "f", direction: "outgoing", status: "failed", error: "bob is offline." })],
    });
    await setup(transport);
    await fireEvent.click(screen.getByRole("tab", { name: /Chat/ }));
    await fireEvent.click(screen.getByRole("button", { name: /sip:bob@tandem.lab/ }));
    expect(screen.getByTestId("message-status")).toHaveTextContent("Not sent");
    expect(screen.getByText("bob is offline.")).toBeInTheDocument();
  });
});

describe("contacts and presence", () => {
  it("lists contacts with live presence changes", async () => {
    const transport = new TestTransport({ list_accounts: [alice], list_contacts: [contact({ watch: "pending" })] });
    await setup(transport);
    await fireEvent.click(screen.getByRole("tab", { name: "Contacts" }));
    expect(screen.getByTestId("contact")).toHaveTextContent("Waiting for them to allow you");
    transport.emit({ type: "contact", contact: contact({ status: "busy", note: "in a meeting", watch: "active" }) });
    flushSync();
    expect(screen.getByTestId("contact-status")).toHaveTextContent("Busy — in a meeting");
    expect(screen.getByTestId("contact")).not.toHaveTextContent("Waiting");
    transport.emit({ type: "contactRemoved", accountId: alice.id, uri: "sip:bob@tandem.lab" });
    flushSync();
    expect(screen.queryByTestId("contact")).toBeNull();
  });

  it("adds a contact and publishes my status", async () => {
    const transport = new TestTransport({ list_accounts: [alice], add_contact: contact({}) });
    await setup(transport);
    await fireEvent.click(screen.getByRole("tab", { name: "Contacts" }));
    await fireEvent.input(screen.getByTestId("contact-uri"), { target: { value: "bob" } });
    await fireEvent.input(screen.getByLabelText(/Name/), { target: { value: "Bob" } });
    await fireEvent.submit(screen.getByTestId("contact-uri").closest("form") as HTMLFormElement);
    expect(transport.sent.find((s) => s.command === "add_contact")?.args).toEqual({
      accountId: alice.id,
      uri: "bob",
      name: "Bob",
    });
    await fireEvent.change(screen.getByTestId("my-status"), { target: { value: "away" } });
    expect(transport.sent.find((s) => s.command === "set_presence")?.args).toMatchObject({
      accountId: alice.id,
      status: "away",
    });
  });

  it("allows and blocks pending watchers", async () => {
    const transport = new TestTransport({
      list_accounts: [alice],
      list_watchers: [
        { accountId: alice.id, uri: "sip:erin@tandem.lab", name: null, status: "pending" },
        { accountId: alice.id, uri: "sip:frank@tandem.lab", name: "Frank", status: "pending" },
        { accountId: alice.id, uri: "sip:gina@tandem.lab", name: null, status: "active" },
      ],
    });
    await setup(transport);
    await fireEvent.click(screen.getByRole("tab", { name: "Contacts" }));
    const requests = screen.getAllByTestId("watcher");
    expect(requests).toHaveLength(2);
    expect(requests[1]).toHaveTextContent("Frank wants to see your presence");
    await fireEvent.click(within(requests[0]).getByRole("button", { name: /Allow/ }));
    await fireEvent.click(within(requests[1]).getByRole("button", { name: /Block/ }));
    expect(transport.sent.find((s) => s.command === "allow_watcher")?.args).toEqual({ accountId: alice.id, uri: "sip:erin@tandem.lab" });
    expect(transport.sent.find((s) => s.command === "block_watcher")?.args).toEqual({ accountId: alice.id, uri: "sip:frank@tandem.lab" });
    transport.emit({
      type: "watchers",
      accountId: alice.id,
      watchers: [{ accountId: alice.id, uri: "sip:erin@tandem.lab", name: null, status: "active" }],
    });
    flushSync();
    expect(screen.queryAllByTestId("watcher")).toHaveLength(0);
  });
});

describe("voicemail", () => {
  it("shows new messages and calls voicemail", async () => {
    const transport = new TestTransport({ list_accounts: [alice] });
    await setup(transport);
    const button = screen.getByTestId("voicemail");
    expect(button).toHaveTextContent("Voicemail");
    transport.emit({
      type: "voicemail",
      voicemail: { accountId: alice.id, newMessages: 2, oldMessages: 1, voicemailUri: "sip:voicemail@tandem.lab" },
    });
    flushSync();
    expect(button).toHaveTextContent("Voicemail: 2 new");
    expect(button).toHaveAccessibleName("Call voicemail (2 new, 1 old messages)");
    await fireEvent.click(button);
    expect(transport.sent.find((s) => s.command === "call")?.args).toEqual({
      accountId: alice.id,
      target: "sip:voicemail@tandem.lab",
    });
  });
});

describe("conference", () => {
  it("shows the roster of a conference call with who is speaking", async () => {
    const transport = new TestTransport({
      list_accounts: [alice],
      list_calls: [
        {
          id: "call-9", sipCallId: "c9", accountId: alice.id, remote: "sip:conf-lab@tandem.lab", direction: "outgoing",
          phase: "active", answeredAtMs: Date.now(), held: false, remoteHeld: false, muted: false, codec: "opus",
          secure: false, endReason: null,
        },
      ],
    });
    await setup(transport);
    expect(screen.queryByTestId("roster")).toBeNull();
    transport.emit({
      type: "roster",
      callId: "call-9",
      participants: [
        { uri: "sip:alice@tandem.lab", name: null, speaking: false, muted: false },
        { uri: "sip:bob@tandem.lab", name: "Bob", speaking: true, muted: false },
        { uri: "sip:carol@tandem.lab", name: null, speaking: false, muted: true },
      ],
    });
    flushSync();
    const roster = screen.getByTestId("roster");
    expect(screen.getByRole("heading", { name: "In the conference (3)" })).toBeInTheDocument();
    const rows = within(roster).getAllByRole("listitem");
    expect(rows[1]).toHaveTextContent("Bob speaking");
    expect(rows[2]).toHaveTextContent("sip:carol@tandem.lab muted");
  });
});

describe("keyboard", () => {
  it("moves between sections with the arrow keys", async () => {
    const transport = new TestTransport({ list_accounts: [alice] });
    await setup(transport);
    const calls = screen.getByRole("tab", { name: "Calls" });
    expect(calls).toHaveAttribute("aria-selected", "true");
    await fireEvent.keyDown(calls, { key: "ArrowRight" });
    expect(screen.getByRole("tab", { name: /Chat/ })).toHaveAttribute("aria-selected", "true");
    await fireEvent.keyDown(calls, { key: "ArrowLeft" });
    await fireEvent.keyDown(calls, { key: "ArrowLeft" });
    expect(screen.getByRole("tab", { name: "Contacts" })).toHaveAttribute("aria-selected", "true");
  });
});
