/** m:ss, or h:mm:ss from an hour on, for a duration in milliseconds. */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const mm = h > 0 ? String(m).padStart(2, "0") : String(m);
  return `${h > 0 ? `${h}:` : ""}${mm}:${String(s).padStart(2, "0")}`;
}

/** Splits `user@domain` (an optional `sip:` prefix is dropped); null when it is not one. */
export function splitAddress(text: string): { user: string; domain: string } | null {
  const m = /^(?:sips?:)?([^@\s:]+)@([^@\s;]+)$/.exec(text.trim());
  return m ? { user: m[1], domain: m[2] } : null;
}

/** A byte count for people: 512 B, 1.5 KiB, 3.2 MiB, 1.1 GiB. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Math.max(0, n);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u === 0 ? `${v} ${units[0]}` : `${v.toFixed(1)} ${units[u]}`;
}
