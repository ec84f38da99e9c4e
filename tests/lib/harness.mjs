// Shared helpers for the end-to-end suites: free ports, child processes that are always
// stopped, and a minimal browser (cookies per host, no automatic redirects).
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
    s.on('error', rej);
  });
}

export class Processes {
  constructor() { this.children = []; this.logs = ''; }

  /** Starts a process and resolves once `readyText` appears in its output. */
  start(cmd, args, env, readyText, timeoutMs = 30000) {
    return new Promise((res, rej) => {
      const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      this.children.push(p);
      const timer = setTimeout(() => rej(new Error(`${cmd} did not become ready:\n${this.logs}`)), timeoutMs);
      const onData = (d) => {
        this.logs += d.toString();
        if (this.logs.includes(readyText)) { clearTimeout(timer); res(p); }
      };
      p.stdout.on('data', onData);
      p.stderr.on('data', onData);
      p.on('exit', (code) => { clearTimeout(timer); if (code) rej(new Error(`${cmd} exited ${code}:\n${this.logs}`)); });
    });
  }

  stopAll() {
    for (const c of this.children) c.kill('SIGTERM');
  }
}

export class Browser {
  constructor() { this.jar = new Map(); }

  async fetch(url, opts = {}) {
    const u = new URL(url);
    const cookies = this.jar.get(u.host) || new Map();
    const headers = { ...(opts.headers || {}) };
    if (cookies.size) headers.cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const r = await fetch(url, { ...opts, headers, redirect: 'manual' });
    for (const c of r.headers.getSetCookie()) {
      const [kv] = c.split(';');
      const i = kv.indexOf('=');
      cookies.set(kv.slice(0, i).trim(), kv.slice(i + 1));
    }
    this.jar.set(u.host, cookies);
    return r;
  }

  form(url, fields) {
    return this.fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });
  }
}

/** Decodes the few HTML entities Keyway's templates produce in attribute values. */
export function unescapeHtml(s) {
  return s.replace(/&#x2f;/gi, '/').replace(/&#x3d;/gi, '=').replace(/&#x27;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}
