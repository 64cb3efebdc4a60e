import { fireEvent, screen } from "@testing-library/svelte";
import { flushSync } from "svelte";
import { describe, expect, it, vi } from "vitest";
import type { CertificateDetails } from "../lib/bindings/CertificateDetails";
import type { FileTransfer } from "../lib/bindings/FileTransfer";
import { formatBytes } from "../lib/format";
import { TestTransport } from "../lib/test-transport";
import { alice, setup } from "./test-support";

function cert(partial: Partial<CertificateDetails>): CertificateDetails {
  return {
    subject: "CN=127.0.0.1, O=Tandem lab",
    issuer: "CN=Tandem lab CA",
    notBefore: "2026-11-26",
    notAfter: "2027-11-26",
    sha256: "AB:CD",
    isCa: false,
    selfSigned: false,
    pem: "-----BEGIN CERTIFICATE-----\nleaf\n-----END CERTIFICATE-----\n",
    ...partial,
  };
}

function transfer(partial: Partial<FileTransfer>): FileTransfer {
  return {
    id: "file-1",
    accountId: alice.id,
    peer: "sip:bob@tandem.lab",
    direction: "incoming",
    name: "notes.txt",
    size: 2048,
    bytes: 0,
    state: "offered",
    path: null,
    error: null,
    atMs: Date.now(),
    ...partial,
  };
}

describe("format", () => {
  it("formats byte counts", () => {
    expect(formatBytes(512)).toBe("512 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(3 * 1024 * 1024)).toBe("3.0 MiB");
  });
});

describe("certificate problems", () => {
  it("shows the refused certificate and trusts the lab CA on request, then tests again", async () => {
    const ca = cert({ subject: "CN=Tandem lab CA", isCa: true, selfSigned: true, sha256: "12:34", pem: "CA-PEM" });
    let trusted = false;
    const transport = new TestTransport({
      list_accounts: [alice],
      test_connection: () =>
        trusted
          ? 600
          : new Error(
              JSON.stringify({
                kind: "tls",
                message: "The secure connection to 127.0.0.1:5061 failed: … If this is your lab server, trust its lab CA.",
                detail: "invalid peer certificate: UnknownIssuer",
                certificate: { trouble: "untrusted", server: "127.0.0.1", error: "UnknownIssuer", certificate: cert({}), ca },
              }),
            ),
      trust_ca: (args: Record<string, unknown>) => {
        trusted = args.pem === "CA-PEM";
        return ca;
      },
    });
    await setup(transport);
    await fireEvent.click(screen.getByTestId("add-account"));
    await fireEvent.input(screen.getByTestId("account-address"), { target: { value: "dana@tls.lab" } });
    await fireEvent.click(screen.getByRole("button", { name: /test connection/i }));
    expect(await screen.findByText(/trust its lab CA/)).toBeInTheDocument();
    const details = screen.getByTestId("cert-details");
    expect(details).toHaveTextContent("CN=127.0.0.1, O=Tandem lab");
    expect(details).toHaveTextContent("CN=Tandem lab CA");
    expect(details).toHaveTextContent("2026-11-26 – 2027-11-26");
    await fireEvent.click(screen.getByRole("button", { name: "Trust this lab CA" }));
    expect(transport.sent.find((s) => s.command === "trust_ca")?.args).toEqual({ pem: "CA-PEM" });
    expect(await screen.findByText(/Connection works/)).toBeInTheDocument();
    expect(screen.getByTestId("trusted-ca")).toHaveTextContent("CN=Tandem lab CA");
    expect(transport.sent.filter((s) => s.command === "test_connection")).toHaveLength(2);
  });

  it("offers no trust for an expired certificate", async () => {
    const transport = new TestTransport({
      list_accounts: [alice],
      test_connection: new Error(
        JSON.stringify({
          kind: "tls",
          message: "The secure connection to 127.0.0.1:5061 failed: its certificate expired on 2020-02-01.",
          detail: "",
          certificate: {
            trouble: "expired",
            server: "127.0.0.1",
            error: "Expired",
            certificate: cert({ notAfter: "2020-02-01", selfSigned: true }),
            ca: null,
          },
        }),
      ),
    });
    await setup(transport);
    await fireEvent.click(screen.getByTestId("add-account"));
    await fireEvent.input(screen.getByTestId("account-address"), { target: { value: "erin@expired.test" } });
    await fireEvent.click(screen.getByRole("button", { name: /test connection/i }));
    expect(await screen.findByText(/expired on 2020-02-01/)).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Trust this lab CA" })).toBeNull();
  });
});

describe("files in chat", () => {
  it("lists an offered file with accept/decline, then its progress and the open-folder action", async () => {
    const transport = new TestTransport({ list_accounts: [alice] });
    await setup(transport);
    await fireEvent.click(screen.getByRole("tab", { name: /Chat/ }));
    transport.emit({ type: "fileTransfer", transfer: transfer({}) });
    flushSync();
    await fireEvent.input(screen.getByTestId("chat-new-to"), { target: { value: "bob" } });
    await fireEvent.submit(screen.getByTestId("chat-new-to").closest("form") as HTMLFormElement);
    expect(screen.getByTestId("transfer")).toHaveTextContent("sip:bob@tandem.lab offers a file: notes.txt (2.0 KiB)");
    await fireEvent.click(screen.getByRole("button", { name: "Accept" }));
    expect(transport.sent.find((s) => s.command === "accept_file")?.args).toEqual({ transferId: "file-1" });
    transport.emit({ type: "fileTransfer", transfer: transfer({ state: "transferring", bytes: 1024 }) });
    flushSync();
    expect(screen.getByTestId("transfer-name")).toHaveTextContent("notes.txt: 1.0 KiB of 2.0 KiB");
    expect(screen.getByRole("progressbar")).toHaveAttribute("value", "1024");
    transport.emit({ type: "fileTransfer", transfer: transfer({ state: "done", bytes: 2048, path: "/data/received/notes.txt" }) });
    flushSync();
    expect(screen.getByTestId("transfer-state")).toHaveTextContent("Done");
    await fireEvent.click(screen.getByRole("button", { name: "Open folder" }));
    expect(transport.sent.find((s) => s.command === "open_folder")?.args).toEqual({ transferId: "file-1" });
  });

  it("sends a picked file as base64 contents", async () => {
    const transport = new TestTransport({ list_accounts: [alice] });
    await setup(transport);
    await fireEvent.click(screen.getByRole("tab", { name: /Chat/ }));
    await fireEvent.input(screen.getByTestId("chat-new-to"), { target: { value: "bob" } });
    await fireEvent.submit(screen.getByTestId("chat-new-to").closest("form") as HTMLFormElement);
    const input = screen.getByTestId("file-input") as HTMLInputElement;
    const file = new File(["hello"], "hello.txt", { type: "text/plain" });
    Object.defineProperty(input, "files", { value: [file], configurable: true });
    await fireEvent.change(input);
    await vi.waitFor(() => expect(transport.sent.some((s) => s.command === "send_file")).toBe(true));
    expect(transport.sent.find((s) => s.command === "send_file")?.args).toEqual({
      accountId: alice.id,
      to: "sip:bob@tandem.lab",
      name: "hello.txt",
      dataBase64: btoa("hello"),
      path: null,
    });
  });
});

describe("typing indicator", () => {
  it("goes idle 15 s after the last keystroke and refreshes while typing goes on", async () => {
    vi.useFakeTimers();
    try {
      const transport = new TestTransport({ list_accounts: [alice] });
      await setup(transport);
      await fireEvent.click(screen.getByRole("tab", { name: /Chat/ }));
      await fireEvent.input(screen.getByTestId("chat-new-to"), { target: { value: "bob" } });
      await fireEvent.submit(screen.getByTestId("chat-new-to").closest("form") as HTMLFormElement);
      const input = screen.getByTestId("chat-input");
      const composing = () => transport.sent.filter((s) => s.command === "composing").map((s) => s.args.active);
      await fireEvent.input(input, { target: { value: "h" } });
      await fireEvent.input(input, { target: { value: "he" } });
      expect(composing()).toEqual([true]);
      vi.advanceTimersByTime(14_000);
      expect(composing()).toEqual([true]);
      vi.advanceTimersByTime(1_500);
      expect(composing()).toEqual([true, false]);
      // Typing again announces it again; a long burst of typing refreshes the indication.
      for (let i = 0; i < 7; i++) {
        await fireEvent.input(input, { target: { value: `he${"y".repeat(i + 1)}` } });
        vi.advanceTimersByTime(10_000);
      }
      expect(composing()).toEqual([true, false, true, true]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("lets a peer's typing indication lapse when the Rust side says so", async () => {
    const transport = new TestTransport({ list_accounts: [alice] });
    await setup(transport);
    await fireEvent.click(screen.getByRole("tab", { name: /Chat/ }));
    await fireEvent.input(screen.getByTestId("chat-new-to"), { target: { value: "bob" } });
    await fireEvent.submit(screen.getByTestId("chat-new-to").closest("form") as HTMLFormElement);
    transport.emit({ type: "composing", accountId: alice.id, peer: "sip:bob@tandem.lab", active: true });
    flushSync();
    expect(screen.getByTestId("typing")).toHaveTextContent("is typing");
    transport.emit({ type: "composing", accountId: alice.id, peer: "sip:bob@tandem.lab", active: false });
    flushSync();
    expect(screen.queryByTestId("typing")).toBeNull();
  });
});

describe("conferences", () => {
  it("joins a room with a PIN from the dialer", async () => {
    const transport = new TestTransport({ list_accounts: [alice] });
    await setup(transport);
    await fireEvent.click(screen.getByText("Join a conference"));
    await fireEvent.input(screen.getByTestId("conf-room"), { target: { value: "team" } });
    await fireEvent.input(screen.getByTestId("conf-pin"), { target: { value: "1234" } });
    await fireEvent.submit(screen.getByTestId("conf-room").closest("form") as HTMLFormElement);
    expect(transport.sent.find((s) => s.command === "join_conference")?.args).toEqual({
      accountId: alice.id,
      room: "team",
      pin: "1234",
    });
  });
});

describe("media path", () => {
  it("shows the path ICE chose and why in the call-quality badge", async () => {
    const active = {
      id: "call-1", sipCallId: "abc", accountId: alice.id, remote: "sip:bob@tandem.lab", direction: "outgoing" as const,
      phase: "active" as const, answeredAtMs: Date.now() - 5_000, held: false, remoteHeld: false, muted: false,
      codec: "opus", secure: false, endReason: null, mediaPath: null,
    };
    const transport = new TestTransport({ list_accounts: [alice], list_calls: [active] });
    await setup(transport);
    expect(screen.queryByTestId("media-path")).toBeNull();
    transport.emit({
      type: "call",
      call: {
        ...active,
        mediaPath: {
          kind: "relay", localType: "relay", remoteType: "host", local: "203.0.113.5:50000", remote: "192.168.1.2:4000",
          why: "Through a TURN relay (relay ↔ host candidates): no direct or NAT path worked.",
        },
      },
    });
    flushSync();
    const path = screen.getByTestId("media-path");
    expect(path).toHaveAttribute("data-kind", "relay");
    expect(path).toHaveTextContent("Through a relay");
    expect(path).toHaveTextContent("no direct or NAT path worked");
  });
});
