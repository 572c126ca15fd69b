// The connection to tessera, against a stand-in HTTP server that misbehaves
// on purpose (the real-server behaviour is in express.test.js).
import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";

import { Checks } from "../dist/checks.js";
import { TesseraClient, TesseraUnavailableError } from "../dist/index.js";

async function listen(handler) {
  const server = http.createServer(handler);
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `http://127.0.0.1:${server.address().port}` };
}

test("a kept-alive socket closed by the server is retried once on a new one", async () => {
  // The second request on any socket finds it closed, as when a server
  // drops an idle connection just as the client reuses it.
  const { server, url } = await listen((req, res) => {
    req.socket.requests = (req.socket.requests ?? 0) + 1;
    if (req.socket.requests > 1) {
      req.socket.destroy();
      return;
    }
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ ok: true }));
  });
  const client = new TesseraClient({ url, apiKey: "tsk_test" });
  try {
    for (let i = 0; i < 3; i++) {
      assert.deepEqual((await client.call("POST", "/v1/requests/check", {})).body, { ok: true });
    }
    assert.equal(client.stats.connections, 3, "each retry opened a new connection");
  } finally {
    client.close();
    server.close();
  }
});

test("5xx, non-JSON answers and timeouts are 'unavailable', naming no secret", async () => {
  const { server, url } = await listen((req, res) => {
    if (req.url === "/slow") return; // never answers
    if (req.url === "/html") {
      res.end("<html>proxy error</html>");
      return;
    }
    res.statusCode = 502;
    res.setHeader("content-type", "application/json");
    res.end("{}");
  });
  const client = new TesseraClient({ url, apiKey: "tsk_secret_key", timeoutMs: 200 });
  try {
    for (const path of ["/bad-gateway", "/html", "/slow"]) {
      await assert.rejects(client.call("POST", path, { token: "tss_secret" }), (e) => {
        assert.ok(e instanceof TesseraUnavailableError, String(e));
        assert.equal(e.status, 503);
        assert.ok(!e.message.includes("tsk_secret_key") && !e.message.includes("tss_secret"), e.message);
        return true;
      });
    }
  } finally {
    client.close();
    server.closeAllConnections();
    server.close();
  }
});

test("credentials in the URL and header-breaking keys are refused at start", () => {
  assert.throws(() => new TesseraClient({ url: "http://user:pw@127.0.0.1:1", apiKey: "tsk_x" }), /credentials/);
  assert.throws(() => new TesseraClient({ url: "http://127.0.0.1:1", apiKey: "tsk_x\r\nx: y" }), /apiKey/);
  assert.throws(() => new TesseraClient({ url: "ftp://127.0.0.1:1", apiKey: "tsk_x" }), /http/);
});

test("checks made in one event-loop turn go out in one call, answers in order", async () => {
  const calls = [];
  const { server, url } = await listen((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      calls.push(req.url);
      const parsed = JSON.parse(body);
      res.setHeader("content-type", "application/json");
      if (req.url === "/v1/requests/check-batch") {
        const results = parsed.requests.map((r) =>
          r.method === "BAD" ? { outcome: "bad_request", reason: "invalid_method", status: 400 } : { outcome: "no_session", reason: r.method },
        );
        res.end(JSON.stringify({ results }));
      } else {
        res.end(JSON.stringify({ outcome: "no_session", reason: parsed.method }));
      }
    });
  });
  const client = new TesseraClient({ url, apiKey: "tsk_test" });
  try {
    const checks = new Checks(client, true);
    const answers = await Promise.all(["A", "BAD", "C"].map((method) => checks.check({ method })));
    assert.deepEqual(calls, ["/v1/requests/check-batch"]);
    assert.deepEqual(answers[0], { status: 200, body: { outcome: "no_session", reason: "A" } });
    assert.deepEqual(answers[1], { status: 400, body: { error: "invalid_method" } });
    assert.equal(answers[2].body.reason, "C");
    // A lone check uses the single route.
    assert.equal((await checks.check({ method: "D" })).body.reason, "D");
    assert.deepEqual(calls, ["/v1/requests/check-batch", "/v1/requests/check"]);
  } finally {
    client.close();
    server.close();
  }
});
