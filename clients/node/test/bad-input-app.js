// A minimal app that signs in whatever user id it is given, to see how
// tessera's refusal of a bad one reaches the caller.
import express from "express";

import { errorHandler, tessera } from "../dist/index.js";

export function badInputApp(server) {
  const sessions = tessera({ url: server.url, apiKey: server.apiKey, log: () => {} });
  const app = express();
  app.use(sessions);
  app.use(express.json());
  app.post("/login-as", async (req, res) => {
    await req.session.login(req.body.user);
    res.json({ user: req.session.user });
  });
  app.use(errorHandler());
  return { app, sessions };
}
