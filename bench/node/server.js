// express + express-session + connect-redis with the same routes as
// bench/src/bin/bench-server.rs: the mainstream reference of the benchmark.
//
//   BENCH_REDIS_URL=redis://127.0.0.1:6379 node server.js 127.0.0.1:8080
//
// Configuration as the express-session README recommends for a Redis
// store: resave off (the store's touch() slides the TTL with EXPIRE),
// saveUninitialized off, a 30-minute cookie maxAge as the idle timeout.
"use strict";

const express = require("express");
const session = require("express-session");
const { RedisStore } = require("connect-redis");
const { createClient } = require("redis");

async function main() {
  const [host, port] = (process.argv[2] || "127.0.0.1:8080").split(":");
  const url = process.env.BENCH_REDIS_URL;
  if (!url) throw new Error("BENCH_REDIS_URL is not set");
  const client = createClient({ url });
  client.on("error", (e) => console.error("redis:", e.message));
  await client.connect();

  const app = express();
  app.disable("x-powered-by");
  app.use(
    session({
      store: new RedisStore({ client, prefix: "sess:" }),
      secret: "bench-only-secret-not-for-production",
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: 30 * 60 * 1000, httpOnly: true, sameSite: "strict", secure: false },
    }),
  );

  app.post("/login", (req, res) => {
    req.session.user_id = String(req.query.user || "");
    res.send("ok");
  });
  app.get("/whoami", (req, res) => {
    if (req.session.user_id) res.send(req.session.user_id);
    else res.sendStatus(401);
  });
  // Read, then write back the whole session: concurrent requests of one
  // session overwrite each other, as with any express-session store.
  app.post("/counter", (req, res) => {
    req.session.counter = (req.session.counter || 0) + 1;
    res.send(String(req.session.counter));
  });
  app.get("/counter", (req, res) => res.send(String(req.session.counter || 0)));

  const server = app.listen(Number(port), host, () =>
    console.error(`bench-node: express-session + connect-redis on ${host}:${port}`),
  );
  const stop = () => server.close(() => client.quit().finally(() => process.exit(0)));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
