import { fireEvent, screen } from "@testing-library/svelte";
import { flushSync } from "svelte";
import { describe, expect, it } from "vitest";
import type { CallInfo } from "../lib/bindings/CallInfo";
import { formatDuration, splitAddress } from "../lib/format";
import { fail, TestTransport } from "../lib/test-transport";
import { alice, setup } from "./test-support";

function call(partial: Partial<CallInfo>): CallInfo {
  return {
    id: "call-1",
    sipCallId: "abc",
    accountId: alice.id,
    remote: "sip:bob@tandem.lab",
    direction: "outgoing",
    phase: "active",
    answeredAtMs: Date.now() - 65_000,
    held: false,
    remoteHeld: false,
    muted: false,
    codec: "opus",
    secure: false,
    endReason: null,
    mediaPath: null,
    ...partial,
  };
}

describe("format", () => {
  it("formats call times", () => {
    expect(formatDuration(0)).toBe("0:00");
    expect(formatDuration(65_400)).toBe("1:05");
    expect(formatDuration(3_726_000)).toBe("1:02:06");
  });
  it("splits addresses", () => {
    expect(splitAddress("sip:alice@example.org")).toEqual({ user: "alice", domain: "example.org" });
    expect(splitAddress("alice")).toBeNull();
  });
});

describe("first run", () => {
  it("starts the bundled lab server from the wizard", async () => {
    const transport = new TestTransport({
      start_bundled_lab: { domain: "tandem.lab", udp: "127.0.0.1:5999", tcp: null, xcap: null, users: [], signedInAs: alice.id },
    });
    await setup(transport);
    const button = screen.getByRole("button", { name: /bundled lab server/i });
    await fireEvent.click(button);
    expect(transport.sent.map((s) => s.command)).toContain("start_bundled_lab");
  });

  it("explains a failed connection test in words", async () => {
    const transport = new TestTransport({
      test_connection: fail("wrongPassword", "sip.example.org refused the user name or password."),
    });
    await setup(transport);
    await fireEvent.click(screen.getByRole("button", { name: /my SIP provider/i }));
    await fireEvent.input(screen.getByLabelText(/SIP address/i), { target: { value: "alice@example.org" } });
    await fireEvent.input(screen.getByLabelText(/^Password/i), { target: { value: "wrong" } });
    await fireEvent.click(screen.getByRole("button", { name: /test connection/i }));
    expect(await screen.findByText(/refused the user name or password/)).toBeInTheDocument();
    const sent = transport.sent.find((s) => s.command === "test_connection");
    expect(sent?.args).toMatchObject({ settings: { user: "alice", domain: "example.org" }, password: "wrong" });
  });
});

describe("accounts and calls", () => {
  it("shows registration state changes from events", async () => {
    const transport = new TestTransport({ list_accounts: [alice] });
    await setup(transport);
    expect(screen.getByTestId("reg-alice@tandem.lab")).toHaveTextContent("Signed in");
    transport.emit({
      type: "registration",
      accountId: alice.id,
      state: { state: "failed", failure: { kind: "unreachable", message: "No answer from the lab.", detail: "" } },
    });
    flushSync();
    expect(screen.getByTestId("reg-alice@tandem.lab")).toHaveTextContent("Not signed in");
    expect(screen.getByText("No answer from the lab.")).toBeInTheDocument();
  });

  it("dials from the keyboard", async () => {
    const transport = new TestTransport({ list_accounts: [alice], call: call({ phase: "dialing" }) });
    await setup(transport);
    const input = screen.getByLabelText(/number or SIP address/i);
    await fireEvent.input(input, { target: { value: "bob" } });
    await fireEvent.submit(input.closest("form") as HTMLFormElement);
    expect(transport.sent.find((s) => s.command === "call")?.args).toEqual({ accountId: alice.id, target: "bob" });
  });

  it("answers an incoming call from the banner", async () => {
    const transport = new TestTransport({ list_accounts: [alice] });
    await setup(transport);
    transport.emit({ type: "call", call: call({ direction: "incoming", phase: "incoming", answeredAtMs: null }) });
    flushSync();
    const banner = screen.getByRole("alertdialog");
    expect(banner).toHaveTextContent("sip:bob@tandem.lab is calling");
    await fireEvent.click(screen.getByRole("button", { name: "Answer" }));
    expect(transport.sent.find((s) => s.command === "answer")?.args).toEqual({ callId: "call-1" });
  });

  it("shows the call screen with timer, mute, hold and quality", async () => {
    const transport = new TestTransport({ list_accounts: [alice], list_calls: [call({})] });
    await setup(transport);
    expect(screen.getByTestId("call-timer").textContent).toMatch(/^1:0\d$/);
    await fireEvent.click(screen.getByRole("button", { name: "Mute" }));
    expect(transport.sent.find((s) => s.command === "mute")?.args).toEqual({ callId: "call-1", muted: true });
    await fireEvent.click(screen.getByRole("button", { name: "Hold" }));
    expect(transport.sent.some((s) => s.command === "hold")).toBe(true);
    transport.emit({
      type: "quality",
      callId: "call-1",
      quality: { codec: "opus", lossPercent: 1.5, jitterMs: 12, rttMs: null, mos: 4.2, secure: false },
    });
    flushSync();
    expect(screen.getByRole("status", { name: "Call quality" })).toHaveTextContent("opus, loss 1.5 %, jitter 12 ms");
    expect(screen.getByRole("status", { name: "Call quality" })).toHaveTextContent("Not encrypted");
    await fireEvent.click(screen.getByRole("button", { name: "Keypad" }));
    await fireEvent.click(screen.getByRole("button", { name: "5" }));
    expect(transport.sent.find((s) => s.command === "send_dtmf")?.args).toEqual({ callId: "call-1", digits: "5" });
    transport.emit({ type: "call", call: call({ phase: "ended", endReason: "Ended by remote." }) });
    flushSync();
    expect(screen.queryByTestId("call-timer")).toBeNull();
  });
});
