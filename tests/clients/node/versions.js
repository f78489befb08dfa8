// Prints the versions of the pinned Node.js interop packages as JSON, after loading them.
//
// Used by the harness tests to prove that tests/clients/node/node_modules holds what
// package-lock.json pins, and that both centrifuge builds (JSON and Protobuf) load.
"use strict";

const fs = require("fs");
const path = require("path");

const { Centrifuge } = require("centrifuge");
const { Centrifuge: CentrifugeProtobuf } = require("centrifuge/build/protobuf");
const WebSocket = require("ws");
const jwt = require("jsonwebtoken");

const SECRET = "rotor-harness-secret-0123456789abcdef";

// `centrifuge` does not export its package.json, so read it from disk.
function installedVersion(name) {
  const file = path.join(__dirname, "node_modules", name, "package.json");
  return JSON.parse(fs.readFileSync(file, "utf8")).version;
}

// Constructing clients (without connecting) exercises both SDK builds without network I/O.
const endpoint = "ws://127.0.0.1:1/connection/websocket";
new Centrifuge(endpoint, { websocket: WebSocket });
new CentrifugeProtobuf(endpoint, { websocket: WebSocket });
const token = jwt.sign({ sub: "harness" }, SECRET, { algorithm: "HS256" });
if (jwt.verify(token, SECRET, { algorithms: ["HS256"] }).sub !== "harness") {
  throw new Error("jsonwebtoken round trip failed");
}

console.log(
  JSON.stringify({
    centrifuge: installedVersion("centrifuge"),
    ws: installedVersion("ws"),
    jsonwebtoken: installedVersion("jsonwebtoken"),
    protobufjs: installedVersion("protobufjs"),
  }),
);
