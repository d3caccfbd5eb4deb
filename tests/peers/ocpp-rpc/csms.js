#!/usr/bin/env node
// An independent OCPP 1.6J CSMS for the backend-link tests: ocpp-rpc in strict mode, so every frame it
// receives or sends is validated against ocpp-rpc's own 1.6 JSON schemas (ajv), not the Python library's.
//
//   node csms.js --port 9400 [--host 127.0.0.1] [--log frames.jsonl] [--commands]
//       [--basic-auth CP1:KEY ...] [--tls-cert server.pem --tls-key server.key [--ca ca.pem
//       [--client-organization CPO]]] [--boot-status Accepted|Pending|Rejected] [--boot-interval 300]
//       [--id-tag TAG=STATUS ...] [--first-transaction-id 1]
//
// Log: one JSON object per line (to --log, else stdout), the format of charger/sim/csms_record.py:
//   {"seq", "at", "cp", "dir": "rx"|"tx", "frame": "<raw text>"}            every frame, both ways
//   {"seq", "at", "cp", "event": "listening"|"open"|"close"|"refused"|"invalid"|"answer", ...}
// "invalid" is ocpp-rpc's strictValidationFailure (method, code, error, outbound, isCall) or badMessage
// (an unparseable frame): a test asserts there is none with outbound false.
//
// With --commands, stdin takes one JSON command per line and each gets an "answer" event with its id;
// stdin closing ends the process, so it never outlives the test that started it:
//   {"command": 1, "cp": "CP1", "action": "Reset", "payload": {"type": "Soft"}, "timeoutMs": 30000}
//   {"command": 2, "cp": "CP1", "raw": "[2,\"x\",\"Foo\",{}]"}          any text, unvalidated
//   {"command": 3, "cp": "CP1", "close": {"code": 1000, "reason": ""}}
//   {"command": 4, "set": {"bootStatus": "Pending", "bootInterval": 10, "idTags": {"T": "Blocked"},
//                          "fail": {"StopTransaction": {"times": 2, "code": "InternalError"}}}}
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const readline = require('node:readline');
const { parseArgs } = require('node:util');
const { RPCServer, createRPCError } = require('ocpp-rpc');

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    log: { type: 'string' },
    commands: { type: 'boolean', default: false },
    'basic-auth': { type: 'string', multiple: true, default: [] },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    ca: { type: 'string' },
    'client-organization': { type: 'string' },
    'boot-status': { type: 'string', default: 'Accepted' },
    'boot-interval': { type: 'string', default: '300' },
    'id-tag': { type: 'string', multiple: true, default: [] },
    'first-transaction-id': { type: 'string', default: '1' },
  },
});

function fail(message) {
  process.stderr.write(`csms.js: ${message}\n`);
  process.exit(2);
}

if (opts.port === undefined) fail('--port is required');
const keyValue = (text, sep) => {
  const at = text.indexOf(sep);
  if (at <= 0) fail(`expected KEY${sep}VALUE, got ${JSON.stringify(text)}`);
  return [text.slice(0, at), text.slice(at + 1)];
};
const authKeys = new Map(opts['basic-auth'].map((t) => keyValue(t, ':')));
if (Boolean(opts['tls-cert']) !== Boolean(opts['tls-key'])) fail('--tls-cert and --tls-key go together');
if (opts.ca && !opts['tls-cert']) fail('--ca needs --tls-cert and --tls-key');

const behaviour = {
  bootStatus: opts['boot-status'],
  bootInterval: Number(opts['boot-interval']),
  idTags: Object.fromEntries(opts['id-tag'].map((t) => keyValue(t, '='))),
  fail: {},
};
let nextTransactionId = Number(opts['first-transaction-id']);

// -- the log ---------------------------------------------------------------------------------------------
const sink = opts.log ? fs.openSync(opts.log, 'a') : 1;
let seq = 0;
function record(cp, fields) {
  const line = JSON.stringify({ seq: seq++, at: Date.now() / 1000, cp, ...fields }) + '\n';
  fs.writeSync(sink, line); // synchronous: the order in the file is the order of events
}

// -- answers to charge-point-initiated calls -----------------------------------------------------------
const now = () => new Date().toISOString();
const idTagInfo = (idTag) => ({ status: behaviour.idTags[idTag] ?? 'Accepted' });
const replies = {
  Authorize: (p) => ({ idTagInfo: idTagInfo(p.idTag) }),
  BootNotification: () => ({ status: behaviour.bootStatus, currentTime: now(), interval: behaviour.bootInterval }),
  DataTransfer: () => ({ status: 'Accepted' }),
  DiagnosticsStatusNotification: () => ({}),
  FirmwareStatusNotification: () => ({}),
  Heartbeat: () => ({ currentTime: now() }),
  LogStatusNotification: () => ({}),
  MeterValues: () => ({}),
  SecurityEventNotification: () => ({}),
  SignCertificate: () => ({ status: 'Accepted' }),
  SignedFirmwareStatusNotification: () => ({}),
  StartTransaction: (p) => ({ transactionId: nextTransactionId++, idTagInfo: idTagInfo(p.idTag) }),
  StatusNotification: () => ({}),
  StopTransaction: (p) => (p.idTag === undefined ? {} : { idTagInfo: idTagInfo(p.idTag) }),
};

function answer(method, params) {
  const planned = behaviour.fail[method];
  if (planned && planned.times > 0) {
    planned.times -= 1;
    throw createRPCError(planned.code ?? 'InternalError', `fault planned by the test for ${method}`);
  }
  const reply = replies[method];
  if (!reply) throw createRPCError('NotSupported', `${method} is not a charge-point-initiated action`);
  return reply(params);
}

// -- the server ------------------------------------------------------------------------------------------
const server = new RPCServer({ protocols: ['ocpp1.6'], strictMode: true });
const clients = new Map();

server.auth((accept, reject, handshake) => {
  const cp = handshake.identity;
  const refuse = (status, reason) => {
    record(cp, { event: 'refused', status, reason });
    reject(status, reason);
  };
  if (!cp) return refuse(404, 'no charge point id in the URL path');
  if (authKeys.size > 0) {
    const expected = authKeys.get(cp);
    if (handshake.password === undefined) return refuse(401, 'missing credentials or user is not the id');
    if (expected === undefined || !handshake.password.equals(Buffer.from(expected))) {
      return refuse(401, 'wrong AuthorizationKey');
    }
  }
  if (opts['client-organization']) {
    const subject = handshake.request.socket.getPeerCertificate?.()?.subject ?? {};
    if (subject.O !== opts['client-organization']) return refuse(401, 'client certificate O is not the CPO');
  }
  // No matching subprotocol: accept without one, then close (OCPP-J 1.6 §3.2) in the 'client' handler.
  accept({}, handshake.protocols.has('ocpp1.6') ? 'ocpp1.6' : false);
});

server.on('client', (client) => {
  const cp = client.identity;
  client.on('message', ({ message, outbound }) => record(cp, { dir: outbound ? 'tx' : 'rx', frame: String(message) }));
  client.on('strictValidationFailure', (e) =>
    record(cp, {
      event: 'invalid',
      method: e.method,
      code: e.error?.rpcErrorCode ?? null,
      error: String(e.error?.message ?? e.error),
      outbound: e.outbound,
      isCall: e.isCall,
    }),
  );
  client.on('badMessage', ({ error }) =>
    record(cp, { event: 'invalid', method: null, code: error?.rpcErrorCode ?? null, error: String(error?.message ?? error), outbound: false }),
  );
  client.on('close', ({ code, reason }) => {
    if (clients.get(cp) === client) clients.delete(cp);
    record(cp, { event: 'close', code, reason: String(reason ?? '') });
  });
  if (client.protocol !== 'ocpp1.6') {
    record(cp, { event: 'refused', status: 101, reason: 'no ocpp1.6 subprotocol offered' });
    client.close({ code: 1002, reason: 'ocpp1.6 subprotocol required' });
    return;
  }
  clients.get(cp)?.close({ code: 1000, reason: 'replaced by a newer connection' });
  clients.set(cp, client);
  record(cp, { event: 'open', protocol: client.protocol });
  client.handle(({ method, params }) => answer(method, params));
});

// -- commands on stdin -----------------------------------------------------------------------------------
async function runCommand(command) {
  const id = command.command;
  const done = (cp, fields) => record(cp ?? '', { event: 'answer', command: id, ...fields });
  try {
    if (command.set) {
      const { fail: failures, idTags, ...rest } = command.set;
      Object.assign(behaviour, rest);
      if (idTags) Object.assign(behaviour.idTags, idTags);
      if (failures) Object.assign(behaviour.fail, failures);
      return done('', { ok: true, payload: {} });
    }
    const client = clients.get(command.cp);
    if (!client) return done(command.cp, { ok: false, code: 'NotConnected', description: `${command.cp} is not connected` });
    if (command.raw !== undefined) {
      client.sendRaw(String(command.raw));
      return done(command.cp, { ok: true, payload: {} });
    }
    if (command.close) {
      await client.close({ code: command.close.code ?? 1000, reason: command.close.reason ?? '' });
      return done(command.cp, { ok: true, payload: {} });
    }
    const result = await client.call(command.action, command.payload ?? {}, { callTimeoutMs: command.timeoutMs });
    done(command.cp, { ok: true, action: command.action, payload: result });
  } catch (error) {
    done(command.cp, {
      ok: false,
      action: command.action,
      code: error.rpcErrorCode ?? error.name ?? 'Error',
      description: String(error.message || error.rpcErrorMessage || error),
      payload: error.details ?? {},
    });
  }
}

async function shutDown() {
  await server.close({ code: 1001, force: true }).catch(() => {});
  process.exit(0);
}

async function main() {
  const port = Number(opts.port);
  let httpServer;
  if (opts['tls-cert']) {
    httpServer = https.createServer({
      cert: fs.readFileSync(opts['tls-cert']),
      key: fs.readFileSync(opts['tls-key']),
      ...(opts.ca ? { ca: fs.readFileSync(opts.ca), requestCert: true, rejectUnauthorized: true } : {}),
      minVersion: 'TLSv1.2',
    });
  } else {
    httpServer = http.createServer();
  }
  httpServer.on('request', (req, res) => {
    res.statusCode = 404;
    res.end();
  });
  httpServer.on('upgrade', server.handleUpgrade);
  await new Promise((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(port, opts.host, resolve);
  });
  const scheme = opts['tls-cert'] ? 'wss' : 'ws';
  record('', { event: 'listening', url: `${scheme}://${opts.host}:${httpServer.address().port}` });
  process.on('SIGTERM', shutDown);
  process.on('SIGINT', shutDown);
  if (opts.commands) {
    const lines = readline.createInterface({ input: process.stdin });
    lines.on('line', (line) => {
      if (!line.trim()) return;
      let command;
      try {
        command = JSON.parse(line);
      } catch (error) {
        return record('', { event: 'answer', command: null, ok: false, code: 'BadCommand', description: String(error) });
      }
      runCommand(command);
    });
    lines.on('close', shutDown);
  }
}

main().catch((error) => fail(error.message));
