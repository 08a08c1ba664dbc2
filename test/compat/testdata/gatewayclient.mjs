// gatewayclient.mjs: drive OpenClaw's own GatewayClient (the signed operator
// client that ships in the openclaw npm package) against a gateway URL.
//
//   node gatewayclient.mjs <openclaw-package-dir> <ws-url> <token> [options-json]
//
// options-json (optional) is merged into the GatewayClient constructor
// options of both connections, e.g. '{"clientName":"cli","mode":"cli"}'.
// With a wss:// URL, '{"tlsFingerprint":"<sha256 hex of the certificate>"}'
// makes the client pin the gateway's certificate (test/compat/tls_test.go);
// a mismatch ends connection 1 with "gateway tls fingerprint mismatch".
//
// Connection 1: shared token + the client's own signed device identity
// (GatewayClient defaults: client.id "gateway-client", mode "backend",
// role operator, scopes ["operator.admin"]). Prints hello-ok's auth, calls
// health, prints the result, disconnects.
// Connection 2: the same device identity and NO shared token, so the client
// must fall back to the device token it stored from connection 1. Prints
// whether the connect frame carried that stored token, and the outcome.
//
// Output: one JSON object per line on stdout, {"step": ..., ...}. The last
// line is {"step":"done","ok":bool}. Exit 0 only when everything the script
// did succeeded. Device identity and device tokens live in the OpenClaw state
// dir (OPENCLAW_STATE_DIR / HOME), which the caller points at a temp folder.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const [openclawDir, url, token, optionsJSON] = process.argv.slice(2);
if (!openclawDir || !url || !token) {
	process.stderr.write("usage: node gatewayclient.mjs <openclaw-package-dir> <ws-url> <token> [options-json]\n");
	process.exit(2);
}
const extraOptions = optionsJSON ? JSON.parse(optionsJSON) : {};

const STEP_TIMEOUT_MS = Number(process.env.CLAWGATE_GC_STEP_TIMEOUT_MS || 45000);

function emit(step, fields = {}) {
	process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
}

function redact(value) {
	// Never print the shared token; device tokens are test-scoped and printed
	// only as a fingerprint so the Go side can compare them.
	if (typeof value !== "string" || value.length === 0) return value;
	if (value === token) return "<TOKEN>";
	return `<redacted:${value.length}:${value.slice(0, 4)}>`;
}

function errorFields(err) {
	if (!err) return { message: "unknown error" };
	const out = { name: err.name, message: String(err.message ?? err) };
	for (const k of ["gatewayCode", "code", "details", "retryable", "retryAfterMs"]) {
		if (err[k] !== undefined) out[k] = err[k];
	}
	return out;
}

async function finish(ok, code) {
	emit("done", { ok });
	// Flush stdout before exiting; the client may leave SQLite/timer handles.
	await new Promise((resolve) => process.stdout.write("", resolve));
	process.exit(code ?? (ok ? 0 : 1));
}

const overall = setTimeout(() => {
	emit("error", { phase: "overall", message: `script timed out after ${4 * STEP_TIMEOUT_MS} ms` });
	finish(false, 3);
}, 4 * STEP_TIMEOUT_MS);
overall.unref();

// --- locate GatewayClient -------------------------------------------------
// Prefer the package's public export (plugin-sdk/gateway-runtime re-exports
// GatewayClient by name). Fall back to grepping dist/ for the chunk that
// defines `var GatewayClient = class` and reading its export alias.
async function loadGatewayClient() {
	const candidates = [];
	const pub = path.join(openclawDir, "dist", "plugin-sdk", "gateway-runtime.js");
	if (fs.existsSync(pub)) candidates.push({ file: pub, exportName: "GatewayClient" });
	const dist = path.join(openclawDir, "dist");
	for (const name of fs.readdirSync(dist).sort()) {
		if (!/\.(mjs|js)$/.test(name)) continue;
		const file = path.join(dist, name);
		let text;
		try {
			text = fs.readFileSync(file, "utf8");
		} catch {
			continue;
		}
		if (!/\bvar GatewayClient = class\b|\bclass GatewayClient\b/.test(text)) continue;
		const m = text.match(/export\s*\{[^}]*\bGatewayClient as (\w+)/);
		candidates.push({ file, exportName: m ? m[1] : "GatewayClient" });
	}
	for (const c of candidates) {
		try {
			const mod = await import(pathToFileURL(c.file).href);
			const GatewayClient = mod[c.exportName];
			if (typeof GatewayClient === "function") {
				emit("module", { file: path.relative(openclawDir, c.file), export: c.exportName });
				return GatewayClient;
			}
		} catch (err) {
			emit("module-candidate-failed", { file: path.relative(openclawDir, c.file), ...errorFields(err) });
		}
	}
	throw new Error("GatewayClient not found in " + dist);
}

// --- observe what the client sends ----------------------------------------
// GatewayClient uses the `ws` package resolved from its own package; the
// require cache makes this the very same class, so patching send() shows the
// real connect frame.
const sent = [];
function patchWebSocketSend() {
	const req = createRequire(path.join(openclawDir, "package.json"));
	const wsRoot = path.dirname(req.resolve("ws/package.json"));
	const WebSocket = req(path.join(wsRoot, "lib", "websocket.js"));
	const orig = WebSocket.prototype.send;
	WebSocket.prototype.send = function (data, ...rest) {
		try {
			const frame = JSON.parse(String(data));
			if (frame && frame.type === "req") sent.push(frame);
		} catch {}
		return orig.call(this, data, ...rest);
	};
}

function describeConnect(frame) {
	const p = structuredClone(frame.params ?? {});
	if (p.auth) for (const k of Object.keys(p.auth)) p.auth[k] = redact(p.auth[k]);
	if (p.device && p.device.signature) p.device.signature = `<sig:${p.device.signature.length}>`;
	return p;
}

// --- one connection -------------------------------------------------------
function connectOnce(GatewayClient, label, opts) {
	return new Promise((resolve) => {
		let settled = false;
		let client;
		const sentBefore = sent.length;
		const done = (result) => {
			if (settled) return;
			settled = true;
			clearTimeout(timer);
			resolve({ ...result, client, connectFrame: sent.slice(sentBefore).find((f) => f.method === "connect") });
		};
		const timer = setTimeout(() => done({ ok: false, error: { message: `${label}: no hello-ok within ${STEP_TIMEOUT_MS} ms` } }), STEP_TIMEOUT_MS);
		client = new GatewayClient({
			url,
			...extraOptions,
			...opts,
			requestTimeoutMs: STEP_TIMEOUT_MS,
			onHelloOk: (hello) => done({ ok: true, hello }),
			onConnectError: (err) => done({ ok: false, error: errorFields(err) }),
			onReconnectPaused: (info) => done({ ok: false, error: { message: "reconnect paused", ...info } }),
			onClose: (code, reason) => done({ ok: false, error: { message: `closed before hello-ok (${code}): ${reason}`, closeCode: code } }),
		});
		client.start();
	});
}

async function stopClient(client) {
	try {
		await client.stopAndWait({ timeoutMs: 3000 });
	} catch (err) {
		emit("stop-warning", errorFields(err));
	}
}

async function main() {
	patchWebSocketSend();
	const GatewayClient = await loadGatewayClient();

	emit("options", { extra: extraOptions });
	// Connection 1: shared token, signed device, default scopes.
	const c1 = await connectOnce(GatewayClient, "connect1", { token });
	if (c1.connectFrame) emit("connect1.sent", { params: describeConnect(c1.connectFrame) });
	if (!c1.ok) {
		emit("connect1.error", { error: c1.error });
		if (c1.client) await stopClient(c1.client);
		return finish(false);
	}
	const auth1 = c1.hello?.auth ?? null;
	const issuedToken = typeof auth1?.deviceToken === "string" ? auth1.deviceToken : null;
	emit("connect1.hello", {
		protocol: c1.hello?.protocol,
		auth: auth1 ? { ...auth1, deviceToken: redact(auth1.deviceToken) } : null,
		hasDeviceToken: issuedToken !== null,
	});
	let healthOk = false;
	try {
		const health = await c1.client.request("health", {});
		emit("connect1.health", { result: health });
		healthOk = health !== null && typeof health === "object" && health.ok === true;
	} catch (err) {
		emit("connect1.health.error", { error: errorFields(err) });
	}
	await stopClient(c1.client);
	emit("connect1.closed");
	if (!healthOk) return finish(false);

	// Connection 2: no shared token; the client must use its stored device token.
	const c2 = await connectOnce(GatewayClient, "connect2", {});
	const sentDeviceToken = c2.connectFrame?.params?.auth?.deviceToken;
	const usedStored = issuedToken !== null && sentDeviceToken === issuedToken;
	if (c2.connectFrame) emit("connect2.sent", { params: describeConnect(c2.connectFrame) });
	emit("connect2.usedStoredDeviceToken", { used: usedStored, issuedInConnect1: issuedToken !== null, sentDeviceToken: sentDeviceToken !== undefined });
	if (c2.ok) {
		emit("connect2.hello", { auth: c2.hello?.auth ? { ...c2.hello.auth, deviceToken: redact(c2.hello.auth.deviceToken) } : null });
	} else {
		emit("connect2.error", { error: c2.error });
	}
	if (c2.client) await stopClient(c2.client);
	// Connection 2 can only succeed when connection 1 handed out a device token.
	return finish(issuedToken === null ? true : c2.ok && usedStored);
}

main().catch((err) => {
	emit("error", { phase: "main", ...errorFields(err) });
	finish(false);
});
