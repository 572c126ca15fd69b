// express + the tessera Node client (clients/node) in front of `tessera
// serve` on Redis, with the same routes as server.js and
// bench/src/bin/bench-server.rs: the "express + tessera client" row of the
// benchmark (docs/performance.md).
//
//   TESSERA_URL=http://127.0.0.1:8081 TESSERA_API_KEY=tsk_… node tessera-server.mjs 127.0.0.1:8080
//
// Started by scripts/bench.sh, which also starts `tessera serve` on the
// same Redis and builds clients/node first.
import express from "express";

import { tessera } from "../../clients/node/dist/index.js";

const [host, port] = (process.argv[2] || "127.0.0.1:8080").split(":");
const url = process.env.TESSERA_URL;
const apiKey = process.env.TESSERA_API_KEY;
if (!url || !apiKey) throw new Error("TESSERA_URL and TESSERA_API_KEY must be set");

const sessions = tessera({ url, apiKey });
const app = express();
app.disable("x-powered-by");
app.use(sessions);

app.post("/login", async (req, res, next) => {
  try {
    await req.session.login(String(req.query.user || ""));
    res.set("x-csrf-token", req.session.csrfToken() ?? "").send("ok");
  } catch (e) {
    next(e);
  }
});
app.get("/whoami", (req, res) => {
  if (req.session.user) res.send(req.session.user);
  else res.sendStatus(401);
});
// Atomic read-modify-write: concurrent requests of one session never lose
// an increment (compare-and-set in tessera).
app.post("/counter", async (req, res, next) => {
  try {
    const n = await req.session.update("counter", (n) => (n ?? 0) + 1);
    res.send(String(n));
  } catch (e) {
    next(e);
  }
});
app.get("/counter", (req, res) => res.send(String(req.session.get("counter") ?? 0)));

const server = app.listen(Number(port), host, () =>
  console.error(`bench-node: express + tessera client on ${host}:${port} (tessera at ${url})`),
);
const stop = () =>
  server.close(() => {
    sessions.close();
    process.exit(0);
  });
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
