// What the mock app API answers for each screen of the phone layout check: the same command
// names and event shapes as app/src/commands.rs (typed in src/lib/bindings).

const now = Date.now();

export const alice = {
  id: "alice@tandem.lab",
  settings: {
    user: "alice", domain: "tandem.lab", authUser: null, displayName: null, proxy: "127.0.0.1:5060",
    transport: "udp", srtp: "off", expires: 600, lab: true,
  },
  hasPassword: true,
  registration: { state: "registered", expires: 600 },
};

const call = (partial) => ({
  id: "call-1", sipCallId: "abc", accountId: alice.id, remote: "sip:bob@tandem.lab", direction: "outgoing",
  phase: "active", answeredAtMs: now - 65_000, held: false, remoteHeld: false, muted: false, codec: "opus",
  secure: true, endReason: null, mediaPath: null, ...partial,
});

const history = [
  { accountId: alice.id, remote: "sip:bob@tandem.lab", direction: "outgoing", outcome: "answered", startedAtMs: now - 3_600_000, durationSecs: 125, detail: "Ended by us." },
  { accountId: alice.id, remote: "sip:carol@tandem.lab", direction: "incoming", outcome: "missed", startedAtMs: now - 7_200_000, durationSecs: 0, detail: "Cancelled." },
];

const messages = [
  { id: "m1", accountId: alice.id, peer: "sip:bob@tandem.lab", direction: "outgoing", text: "Hello Bob, are you free for a call?", atMs: now - 120_000, status: "displayed", error: null },
  { id: "m2", accountId: alice.id, peer: "sip:bob@tandem.lab", direction: "incoming", text: "In five minutes!", atMs: now - 60_000, status: "read", error: null },
  { id: "m3", accountId: alice.id, peer: "sip:carol@tandem.lab", direction: "incoming", text: "Lab at 3?", atMs: now - 30_000, status: "unread", error: null },
];

const contacts = [
  { accountId: alice.id, uri: "sip:bob@tandem.lab", name: "Bob", status: "busy", note: "in a meeting", watch: "active" },
  { accountId: alice.id, uri: "sip:carol@tandem.lab", name: null, status: "available", note: null, watch: "active" },
  { accountId: alice.id, uri: "sip:dave@tandem.lab", name: "Dave", status: "unknown", note: null, watch: "pending" },
];

const watchers = [{ accountId: alice.id, uri: "sip:erin@tandem.lab", name: null, status: "pending" }];

const cameras = {
  available: [
    { id: "pattern", label: "Test pattern (moving colour bars)", kind: "pattern", size: { width: 640, height: 480, fps: 15 } },
    { id: "file:/home/alice/.local/share/tandem/videos/foreman.y4m", label: "foreman.y4m", kind: "file", size: { width: 352, height: 288, fps: 30 } },
  ],
  current: "pattern",
  folder: "/home/alice/.local/share/tandem/videos",
};

const base = {
  list_accounts: [alice], list_calls: [], history, list_messages: messages, list_contacts: contacts,
  list_watchers: watchers, my_presence: [{ accountId: alice.id, status: "available", note: "at the lab" }],
  list_cameras: cameras,
};

const video = (partial) => ({
  codec: "VP8", sending: { width: 640, height: 480, fps: 15 }, receiving: true,
  remoteSize: { width: 640, height: 480, fps: null }, camera: "pattern", ...partial,
});

const transfers = [
  { id: "file-1", accountId: alice.id, peer: "sip:bob@tandem.lab", direction: "incoming", name: "lab-report.pdf", size: 1_482_000, bytes: 0, state: "offered", path: null, error: null, atMs: now - 50_000 },
  { id: "file-2", accountId: alice.id, peer: "sip:bob@tandem.lab", direction: "outgoing", name: "capture.pcap", size: 8_400_000, bytes: 3_100_000, state: "transferring", path: "/home/alice/capture.pcap", error: null, atMs: now - 40_000 },
  { id: "file-3", accountId: alice.id, peer: "sip:bob@tandem.lab", direction: "incoming", name: "notes.txt", size: 2_048, bytes: 2_048, state: "done", path: "/home/alice/.local/share/tandem/received/notes.txt", error: null, atMs: now - 30_000 },
];

const leaf = {
  subject: "O=Tandem lab, CN=127.0.0.1", issuer: "O=Tandem lab, CN=Tandem lab CA", notBefore: "2026-11-26", notAfter: "2027-11-26",
  sha256: "3F:A1:09:5C:77:E2:4B:90:1D:C8:6E:2A:F0:13:88:5B:CE:04:71:9A:D2:36:EF:58:0B:A9:64:C7:12:8D:F3:2E",
  isCa: false, selfSigned: false, pem: "LEAF",
};
const tlsFailure = {
  kind: "tls",
  message: "The secure connection to 127.0.0.1:5061 failed: its certificate (\"O=Tandem lab, CN=127.0.0.1\", issued by \"O=Tandem lab, CN=Tandem lab CA\") comes from a certificate authority this app does not trust. If this is your lab server, trust its lab CA.",
  detail: "invalid peer certificate: UnknownIssuer",
  certificate: {
    trouble: "untrusted", server: "127.0.0.1", error: "invalid peer certificate: UnknownIssuer", certificate: leaf,
    ca: { ...leaf, subject: "O=Tandem lab, CN=Tandem lab CA", isCa: true, selfSigned: true, pem: "CA" },
  },
};

/** Screens: the fixture answers and what to click once the page is up. */
export const screens = {
  wizard: { answers: { ...base, list_accounts: [], history: [], list_messages: [], list_contacts: [], list_watchers: [] }, tab: null },
  calls: { answers: base, tab: null },
  "in-call": {
    answers: {
      ...base,
      list_calls: [call({
        mediaPath: {
          kind: "reflexive", localType: "srflx", remoteType: "host", local: "203.0.113.7:40122", remote: "198.51.100.20:5004",
          why: "Through a NAT: the path uses an address a NAT router mapped (srflx ↔ host candidates, 203.0.113.7:40122 ↔ 198.51.100.20:5004).",
        },
      })],
    },
    tab: null,
    steps: async (page) => {
      await page.getByText("Through NAT (reflexive)").click();
    },
  },
  conference: {
    answers: { ...base, list_calls: [call({ id: "call-2", remote: "sip:conf-lab@tandem.lab" })] },
    tab: null,
    events: [{
      type: "roster", callId: "call-2",
      participants: [
        { uri: "sip:alice@tandem.lab", name: null, speaking: false, muted: false },
        { uri: "sip:bob@tandem.lab", name: "Bob", speaking: true, muted: false },
        { uri: "sip:carol@tandem.lab", name: null, speaking: false, muted: true },
      ],
    }],
  },
  // Pictures come from phone.mjs's /api/video route (a synthetic frame).
  "video-call": {
    answers: { ...base, list_calls: [call({ id: "call-3", video: video({}) })] },
    tab: null,
    steps: async (page) => {
      await page.waitForSelector("[data-testid=remote-video]:not([data-frames='0'])");
      await page.waitForSelector("[data-testid=self-view]:not([data-frames='0'])");
    },
  },
  "video-camera-off": {
    answers: { ...base, list_calls: [call({ id: "call-4", video: video({ camera: null, sending: null }) })] },
    tab: null,
  },
  "incoming-video": {
    answers: { ...base, list_calls: [call({ direction: "incoming", phase: "incoming", answeredAtMs: null, remote: "sip:carol@tandem.lab", video: video({ codec: null, sending: null, receiving: false, remoteSize: null }) })] },
    tab: null,
  },
  incoming: { answers: { ...base, list_calls: [call({ direction: "incoming", phase: "incoming", answeredAtMs: null, remote: "sip:carol@tandem.lab" })] }, tab: null },
  chat: { answers: base, tab: "Chat", open: "sip:bob@tandem.lab" },
  contacts: { answers: base, tab: "Contacts" },
  "chat-files": { answers: { ...base, list_transfers: transfers }, tab: "Chat", open: "sip:bob@tandem.lab" },
  "join-conference": {
    answers: base,
    tab: null,
    steps: async (page) => {
      await page.getByText("Join a conference").click();
      await page.getByTestId("conf-room").fill("team");
    },
  },
  "account-tls": {
    answers: { ...base, test_connection: { error: tlsFailure } },
    tab: null,
    steps: async (page) => {
      await page.getByTestId("add-account").click();
      await page.getByTestId("account-address").fill("dana@tls.lab");
      await page.getByRole("button", { name: "Test connection" }).click();
      await page.waitForSelector("[data-testid=cert-details]");
      await page.getByTestId("cert-details").scrollIntoViewIfNeeded();
    },
  },
};
