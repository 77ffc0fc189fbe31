/* paretune dashboard: one page, hash routing (#/jobs/<id>), live updates, Plotly charts.
 *
 * No framework and no build step. Every piece of text that reaches the page goes through
 * textContent (see el()), so user input such as a job name is never parsed as HTML; the
 * only HTML-ish strings are the ones Plotly renders (hover labels, axis titles, tick labels),
 * and those are built from escapeHtml()'d parts.
 *
 * The open job follows GET /v1/jobs/{id}/events (server-sent events): each `progress` event
 * carries the job, and new trials are then fetched incrementally (after=<last number>). When
 * the stream fails the page falls back to polling the job. Charts and tables are generic
 * over the job's objectives and configuration keys, so training and inference jobs share them.
 */
"use strict";

const API = "/v1";
const POLL_MS = 2000; // job list while something is active; open job when the stream failed
const IDLE_POLL_MS = 15000; // job list when every job has ended (picks up other clients' jobs)
const PAGE_LIMIT = 1000; // the API's maximum page size for trials
const PARALLEL_PAGES = 4; // trial pages in flight at once while catching up with a big job
const JOBS_LIMIT = 100;
const GL_POINTS = 1500; // above this many points a scatter trace is drawn with WebGL
const PARCOORDS_SAMPLE = 2000; // lines besides the front in the parallel coordinates
const PARCOORDS_EVERY_MS = 3000; // parcoords redraws cost ~1 ms a line without a GPU: throttle
const FRONT_ROWS = 500; // rows of the front table at most
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

/* Configuration keys: display order (training, then inference; others alphabetically). */
const KNOB_ORDER = [
  "backend", "mode", "tp", "pp", "cp", "ep", "vpp", "attention_dp", "replicas", "workers",
  "micro_batch_size", "sharding", "recompute", "sequence_parallel", "dtype",
  "weight_dtype", "kv_dtype", "max_batch_size",
];
const KNOB_LABELS = {
  micro_batch_size: "mbs", sequence_parallel: "sp", attention_dp: "attn dp",
  max_batch_size: "max batch", weight_dtype: "weights", kv_dtype: "kv cache",
};
const PRECISIONS = ["bf16", "fp8", "int8", "int4", "fp4"];
/* Natural order of categorical values on parallel-coordinate axes (else alphabetical). */
const VALUE_ORDER = {
  sharding: ["none", "zero1", "zero2", "zero3"],
  recompute: ["none", "selective", "full"],
  dtype: PRECISIONS,
  weight_dtype: PRECISIONS,
  kv_dtype: PRECISIONS,
  mode: ["aggregated", "disaggregated"],
  backend: ["vllm", "sglang", "trtllm"],
};

/* Known metrics: short table header, label (with unit), natural direction, formatter. */
const metric = (short, label, dir, fmt, scale) => ({ short, label, dir, fmt, scale });
const fixed = (digits, unit = "") => (v) => `${fmtNum(v, digits)}${unit}`;
const METRICS = {
  tokens_per_s_per_gpu: metric("tok/s/GPU", "tokens/s per GPU", "max", fixed(0)),
  tokens_per_s: metric("tok/s", "tokens/s", "max", fixed(0)),
  step_time_s: metric("step time", "step time (s)", "min", (v) => `${fmtSig(v)} s`),
  mfu: metric("MFU", "MFU (%)", "max", (v) => `${fmtNum(mfuPercent(v), 1)} %`, mfuPercent),
  memory_per_gpu_gib: metric("mem/GPU", "memory per GPU (GiB)", "min", fixed(1, " GiB")),
  cost_per_million_tokens_usd: metric("$/M tok", "$ per M tokens", "min", (v) => `$${fmtSig(v)}`),
  output_tokens_per_s_per_gpu: metric("out tok/s/GPU", "output tokens/s per GPU", "max", fixed(0)),
  output_tokens_per_s: metric("out tok/s", "output tokens/s", "max", fixed(0)),
  tokens_per_s_per_user: metric("tok/s/user", "tokens/s per user", "max", fixed(1)),
  ttft_ms: metric("TTFT", "TTFT (ms)", "min", fixed(1, " ms")),
  tpot_ms: metric("TPOT", "TPOT (ms)", "min", fixed(2, " ms")),
  batch_size: metric("batch", "batch size", "max", fixed(0)),
};
/* Metrics offered before any trial has arrived (afterwards: whatever the trials report). */
const KIND_METRICS = {
  training: ["tokens_per_s_per_gpu", "tokens_per_s", "step_time_s", "mfu",
    "memory_per_gpu_gib", "cost_per_million_tokens_usd"],
  inference: ["output_tokens_per_s_per_gpu", "output_tokens_per_s", "tokens_per_s_per_user",
    "ttft_ms", "tpot_ms", "memory_per_gpu_gib", "cost_per_million_tokens_usd"],
};
const FRONT_METRIC_COLUMNS = 5;

/* Trial categories, in legend order. */
const CATEGORIES = {
  feasible: { label: "feasible", color: "#2563eb", symbol: "circle" },
  infeasible: { label: "infeasible", color: "#f59e0b", symbol: "diamond" },
  failed: { label: "failed", color: "#dc2626", symbol: "x" },
  pruned: { label: "pruned", color: "#9ca3af", symbol: "circle-open" },
};
const OVERLAY = {
  predicted: { color: "#7c3aed", symbol: "circle-open", size: 9 },
  measured: { color: "#db2777", symbol: "diamond", size: 8 },
};

const state = {
  jobsTimer: null,
  jobsSignature: "",
  jobs: [],
  view: null, // the open job (see newView)
  menu: null, // the open export menu: {number, anchor}
};

/* ------------------------------------------------------------------ small helpers */

const $ = (id) => document.getElementById(id);

/** Build an element; strings become text nodes (never HTML). */
function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of [].concat(children)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** replaceChildren() that skips null/false (replaceChildren would print "null"). */
function setChildren(node, ...children) {
  node.replaceChildren(...children.filter((c) => c !== null && c !== undefined && c !== false));
}

function escapeHtml(value) {
  return String(value)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

const isNum = (v) => typeof v === "number" && Number.isFinite(v);
const plural = (n, word) => `${fmtNum(n, 0)} ${word}${n === 1 ? "" : "s"}`;

/* Intl.NumberFormat is slow to build: one per format (toLocaleString builds one per call). */
const numberFormats = new Map();

function numberFormat(min, max) {
  const key = `${min}:${max}`;
  if (!numberFormats.has(key)) {
    numberFormats.set(key, new Intl.NumberFormat("en-US", {
      minimumFractionDigits: min,
      maximumFractionDigits: max,
    }));
  }
  return numberFormats.get(key);
}

function fmtNum(value, digits) {
  if (!isNum(value)) return "–";
  return numberFormat(digits, digits).format(value);
}

function fmtSig(value) {
  if (!isNum(value)) return "–";
  return numberFormat(0, 6).format(Number(value.toPrecision(3)));
}

/** MFU arrives as a fraction; show it as a percentage. */
function mfuPercent(value) {
  return value <= 1.5 ? value * 100 : value;
}

function fmtMetric(name, value) {
  if (!isNum(value)) return "–";
  const spec = METRICS[name];
  return spec ? spec.fmt(value) : fmtSig(value);
}

/** A metric value as plotted (MFU in percent, the rest as is). */
function plotValue(name, value) {
  const scale = METRICS[name] && METRICS[name].scale;
  return scale ? scale(value) : value;
}

const metricLabel = (name) => (METRICS[name] ? METRICS[name].label : name.replaceAll("_", " "));
const metricShort = (name) => (METRICS[name] ? METRICS[name].short : name);

function knobLabel(key) {
  const parts = key.split(".");
  const leaf = parts.pop();
  return [...parts, KNOB_LABELS[leaf] || leaf].join(" ");
}

/** A knob's value as shown: null means "let the framework decide", a missing key "–". */
function fmtKnob(value) {
  if (typeof value === "boolean") return value ? "on" : "off";
  if (value === undefined) return "–";
  if (value === null) return "auto";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/** {prefill: {tp: 2}} -> {"prefill.tp": 2}: disaggregated pools become plain columns. */
function flattenConfig(config, prefix = "", out = {}) {
  for (const [key, value] of Object.entries(config || {})) {
    const name = prefix + key;
    if (value && typeof value === "object" && !Array.isArray(value)) flattenConfig(value, `${name}.`, out);
    else out[name] = value;
  }
  return out;
}

/** Sort key of a configuration key: top level first, then pools; known knobs in order. */
function knobRank(key) {
  const parts = key.split(".");
  const leaf = parts.pop();
  const index = KNOB_ORDER.indexOf(leaf);
  return [parts.join("."), index < 0 ? KNOB_ORDER.length : index, leaf];
}

function compareKnobs(a, b) {
  const [pa, ia, la] = knobRank(a);
  const [pb, ib, lb] = knobRank(b);
  return pa.localeCompare(pb) || ia - ib || la.localeCompare(lb);
}

function knobsText(flat, keys, separator = " · ") {
  return keys.filter((k) => k in flat).map((k) => `${knobLabel(k)} ${fmtKnob(flat[k])}`).join(separator);
}

function chunk(items, size) {
  const out = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Up to ``count`` items spread evenly over the list (stable from one render to the next). */
function evenSample(items, count) {
  if (items.length <= count) return items;
  const step = items.length / count;
  return Array.from({ length: count }, (_, i) => items[Math.floor(i * step)]);
}

function fmtDuration(seconds) {
  if (!isNum(seconds) || seconds < 0) return "–";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds % 60);
  return m < 60 ? `${m} min ${s} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

const modelName = (spec) =>
  typeof spec?.model === "string" ? spec.model : spec?.model?.name || "?";
const gpuId = (spec) =>
  typeof spec?.cluster?.gpu === "string" ? spec.cluster.gpu : spec?.cluster?.gpu?.id || "?";
const clusterText = (spec) => `${gpuId(spec)} × ${spec?.cluster?.num_gpus ?? "?"}`;
const jobPath = (id) => `/jobs/${encodeURIComponent(id)}`;
const jobHash = (id) => `#/jobs/${encodeURIComponent(id)}`;

function statusBadge(status, id) {
  return el("span", { class: `badge status-${status}`, id, text: status });
}

let webGlAvailable = null;

/** WebGL can be missing (old GPU, locked-down browser): big charts then fall back to SVG. */
function hasWebGl() {
  if (webGlAvailable === null) {
    try {
      webGlAvailable = Boolean(document.createElement("canvas").getContext("webgl"));
    } catch {
      webGlAvailable = false;
    }
  }
  return webGlAvailable;
}

/* ------------------------------------------------------------------ API */

class ApiError extends Error {
  constructor(status, body) {
    super(typeof body?.detail === "string" ? body.detail : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/** Fetch an API path; JSON bodies are parsed, others returned as text. */
async function api(path, options = {}) {
  const response = await fetch(API + path, {
    ...options,
    headers: { Accept: "application/json", ...(options.headers || {}) },
  });
  const text = await response.text();
  let body = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not JSON: keep the text (a launch script, a proxy error page, ...)
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** A route's body as the exact text the server sent (launch files are compared byte for byte). */
async function apiText(path) {
  const response = await fetch(API + path);
  const text = await response.text();
  if (!response.ok) {
    let body = text;
    try {
      body = JSON.parse(text);
    } catch {
      // keep the text
    }
    throw new ApiError(response.status, body);
  }
  return text;
}

/** The answer, or null when the resource is not there (a 404 here is not "no such job"). */
async function unless404(request) {
  try {
    return await request;
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

const asList = (data) => (Array.isArray(data) ? data : data?.items || []);

function showBanner(message) {
  const banner = $("connection-banner");
  banner.textContent = message;
  banner.classList.toggle("hidden", !message);
}

/* ------------------------------------------------------------------ job list */

async function refreshJobs() {
  clearTimeout(state.jobsTimer);
  try {
    const page = await api(`/jobs?limit=${JOBS_LIMIT}`);
    state.jobs = asList(page);
    renderJobs(state.jobs, page.total ?? state.jobs.length);
    showBanner("");
  } catch (err) {
    showBanner(`Cannot load the job list (${err.message}); retrying…`);
  }
  const active = state.jobs.some((job) => !TERMINAL.has(job.status));
  clearTimeout(state.jobsTimer); // a concurrent refresh may have set one meanwhile
  state.jobsTimer = setTimeout(refreshJobs, active ? POLL_MS : IDLE_POLL_MS);
}

function renderJobs(jobs, total) {
  const signature = JSON.stringify(jobs);
  if (signature !== state.jobsSignature) {
    state.jobsSignature = signature;
    const empty = el("tr", { class: "empty-row" },
      el("td", { colspan: 4, text: "No jobs yet: start one with the form above." }));
    $("jobs-body").replaceChildren(...(jobs.length ? jobs.map(jobRow) : [empty]));
  }
  const running = jobs.filter((j) => !TERMINAL.has(j.status)).length;
  const shown = total > jobs.length ? `latest ${jobs.length} of ${total}` : `${total}`;
  $("jobs-summary").textContent = `${shown} job${total === 1 ? "" : "s"}` +
    (running ? ` · ${running} active` : "");
  markSelectedRow();
}

function jobRow(job) {
  const open = () => { location.hash = jobHash(job.id); };
  return el("tr", {
    dataset: { jobId: job.id },
    tabindex: 0,
    onclick: open,
    onkeydown: (ev) => { if (ev.key === "Enter") open(); },
  }, [
    el("td", {}, statusBadge(job.status)),
    el("td", { class: "job-cell" }, [
      el("a", { class: "job-name", href: jobHash(job.id), text: job.name || job.id }),
      el("div", { class: "muted small" }, [
        el("span", { class: "job-model", text: modelName(job.spec) }),
        " · ",
        el("span", { class: "job-cluster nowrap", text: clusterText(job.spec) }),
      ]),
    ]),
    el("td", { class: "num" }, progressCell(job)),
    el("td", { class: "num" }, bestCell(job)),
  ]);
}

/** The job's best value on its first objective, with the metric's short name. */
function bestCell(job) {
  const name = objectivesOf(job)[0]?.metric;
  const value = name ? job.best?.metrics?.[name] : undefined;
  if (!isNum(value)) return "–";
  return [
    el("div", { class: "nowrap", text: fmtMetric(name, value) }),
    el("div", { class: "muted small nowrap", text: metricShort(name) }),
  ];
}

function progressCell(job) {
  const done = job.trials_done || 0;
  const planned = job.trials_planned || 0;
  const pct = planned ? Math.min(100, (100 * done) / planned) : 0;
  return [
    el("div", { class: "nowrap", text: planned ? `${done} / ${planned}` : `${done}` }),
    el("div", { class: "progress mini" }, el("span", { style: `width:${pct.toFixed(1)}%` })),
  ];
}

function markSelectedRow() {
  const openId = state.view?.jobId;
  for (const row of document.querySelectorAll("#jobs-body tr[data-job-id]")) {
    row.classList.toggle("selected", row.dataset.jobId === openId);
  }
}

/* ------------------------------------------------------------------ submit form */

const EXAMPLE_SPEC = {
  name: "llama-3.1-8b on 16 H100",
  kind: "training",
  model: "llama-3.1-8b",
  cluster: { gpu: "h100-sxm-80gb", num_gpus: 16 },
  workload: { seq_len: 4096, global_batch_size: 256 },
  space: { tp: [1, 2, 4], pp: [1, 2], micro_batch_size: [1, 2], recompute: ["none", "selective", "full"] },
  objectives: ["max:tokens_per_s_per_gpu", "min:memory_per_gpu_gib"],
};

async function loadCatalogs() {
  try {
    const [models, gpus] = await Promise.all([api("/catalog/models"), api("/catalog/gpus")]);
    fillSelect($("f-model"), asList(models).map(modelOption), "llama-3.1-8b");
    fillSelect($("f-gpu"), asList(gpus).map(gpuOption), "h100-sxm-80gb");
  } catch (err) {
    showSubmitErrors([{ path: "catalog", msg: `could not load the catalogs: ${err.message}` }]);
  }
}

function modelOption(model) {
  const moe = model.num_experts > 0 ? ` · MoE ${model.num_experts} experts` : "";
  const layers = model.num_layers ? ` · ${model.num_layers} layers` : "";
  return { value: model.name, label: `${model.name}${layers}${moe}` };
}

function gpuOption(gpu) {
  const memory = isNum(gpu.memory_gib) ? ` · ${gpu.memory_gib} GiB` : "";
  return { value: gpu.id, label: `${gpu.name || gpu.id}${memory}` };
}

function fillSelect(select, options, preferred) {
  select.replaceChildren(...options.map((o) => el("option", { value: o.value, text: o.label })));
  if (options.some((o) => o.value === preferred)) select.value = preferred;
}

/** Show the workload fields of the chosen kind only (hidden fields are not sent). */
function onKindChange() {
  const kind = $("f-kind").value;
  for (const node of document.querySelectorAll(".kind-training, .kind-inference")) {
    node.classList.toggle("hidden", !node.classList.contains(`kind-${kind}`));
  }
}

function pasteExample() {
  const box = $("f-spec-json");
  box.closest("details").open = true;
  box.value = JSON.stringify(EXAMPLE_SPEC, null, 2);
  box.focus();
}

/** The spec to POST: the pasted spec when there is some, else the form fields. */
async function buildSpec() {
  const pasted = $("f-spec-json").value.trim();
  return pasted ? parsePastedSpec(pasted) : specFromFields();
}

/** JSON is parsed here; anything else is sent to the server's YAML parser (no YAML library
 * ships to the browser), whose 422 names the line and column. */
async function parsePastedSpec(text) {
  let spec;
  try {
    spec = JSON.parse(text);
  } catch (_) {
    const resp = await fetch("/v1/specs/parse", {
      method: "POST",
      headers: { "Content-Type": "application/x-yaml" },
      body: text,
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : resp.statusText;
      throw new Error(`the pasted spec is neither JSON nor valid YAML: ${detail}`);
    }
    spec = body;
  }
  if (!spec || typeof spec !== "object" || Array.isArray(spec)) {
    throw new Error("the pasted spec must be one object (a mapping of fields)");
  }
  return spec;
}

function specFromFields() {
  const kind = $("f-kind").value;
  const workload = kind === "inference"
    ? { input_len: numberField("f-input-len"), output_len: numberField("f-output-len") }
    : { seq_len: numberField("f-seq-len"), global_batch_size: numberField("f-global-batch") };
  const spec = {
    model: $("f-model").value,
    cluster: { gpu: $("f-gpu").value, num_gpus: numberField("f-num-gpus") },
    workload,
  };
  if (kind !== "training") spec.kind = kind;
  const name = $("f-name").value.trim();
  if (name) spec.name = name;
  return spec;
}

/** A number input's value; empty or malformed becomes null so the server names the field. */
function numberField(id) {
  const raw = $(id).value.trim();
  if (raw === "") return null;
  const value = Number(raw);
  return Number.isFinite(value) ? value : raw;
}

async function onSubmit(event) {
  event.preventDefault();
  clearSubmitErrors();
  let spec;
  try {
    spec = await buildSpec();
  } catch (err) {
    showSubmitErrors([{ path: "spec", msg: err.message }]);
    return;
  }
  setSubmitting(true);
  let message = "";
  try {
    const job = await api("/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(spec),
    });
    message = `submitted ${job.name || job.id}`;
    location.hash = jobHash(job.id);
    refreshJobs();
  } catch (err) {
    showSubmitErrors(errorsFrom(err));
  } finally {
    setSubmitting(false, message);
  }
}

function setSubmitting(busy, message = "") {
  $("submit-button").disabled = busy;
  $("submit-status").textContent = busy ? "submitting…" : message;
}

/** [{path, msg}] from an API error (422 detail list, or a plain detail string). */
function errorsFrom(err) {
  if (!(err instanceof ApiError)) {
    return [{ path: "", msg: `could not reach the server: ${err.message}` }];
  }
  const detail = err.body?.detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => ({
      path: typeof d.field === "string" && d.field ? d.field : locPath(d.loc),
      msg: d.msg || JSON.stringify(d),
    }));
  }
  if (typeof detail === "string") return [{ path: "", msg: detail }];
  return [{ path: "", msg: `the server answered HTTP ${err.status}` }];
}

/** ["body", "training", "cluster", "num_gpus"] -> "cluster.num_gpus". */
function locPath(loc) {
  const parts = (Array.isArray(loc) ? loc : loc ? [loc] : []).map(String);
  if (parts[0] === "body") parts.shift();
  if (parts[0] === "training" || parts[0] === "inference") parts.shift();
  return parts.join(".") || "spec";
}

function showSubmitErrors(errors) {
  const list = $("submit-errors");
  list.replaceChildren(...errors.map((e) =>
    el("li", {}, [e.path ? el("code", { text: e.path }) : null, e.path ? " " : null, e.msg])));
  list.classList.toggle("hidden", errors.length === 0);
  for (const field of $("submit-form").querySelectorAll("[data-path]")) {
    const path = field.dataset.path;
    const bad = errors.some((e) => e.path === path || e.path.startsWith(`${path}.`));
    field.classList.toggle("invalid", bad);
    field.setAttribute("aria-invalid", String(bad));
  }
}

function clearSubmitErrors() {
  showSubmitErrors([]);
  $("submit-status").textContent = "";
}

/* ------------------------------------------------------------------ routing */

function route() {
  const match = location.hash.match(/^#\/jobs\/([^/?#]+)/);
  if (match) openJob(decodeURIComponent(match[1]));
  else closeJob();
  markSelectedRow();
}

function closeJob() {
  stopView();
  $("job-view").classList.add("hidden");
  $("welcome").classList.remove("hidden");
  document.title = "paretune";
}

function stopView() {
  const view = state.view;
  if (view) {
    clearTimeout(view.timer);
    clearTimeout(view.retryTimer);
    clearTimeout(view.parcoordsTimer);
    if (view.source) view.source.close();
  }
  state.view = null;
  closeExportMenu();
  $("export-panel").classList.add("hidden");
}

/* ------------------------------------------------------------------ job view: data */

function newView(jobId) {
  return {
    jobId,
    job: null,
    trials: [],
    byNumber: new Map(),
    knobKeys: new Set(), // flattened configuration keys seen in the trials
    sortedKnobs: null,
    metricNames: new Set(), // numeric metrics seen in the trials
    lastNumber: null, // highest trial number fetched: the next fetch asks for after=<this>
    axes: null,
    axisSignature: "",
    pareto: null, // the server's front, once the job has ended
    recommendation: null,
    formats: null, // launch formats the recommendation route offers for this job's kind
    finalized: false,
    source: null, // the EventSource while the stream is up
    timer: null, // polling fallback
    retryTimer: null, // a failed refresh after an event
    parcoordsTimer: null,
    lastParcoords: -Infinity,
    parcoordsMs: 0,
    parcoordsWait: false,
    parcoordsSignature: "",
    refreshing: false,
    dirty: false,
    rendered: false, // drawn at least once
    selected: null,
    launchFormat: null,
    recommendationKey: "",
    exportSeq: 0,
  };
}

const isCurrent = (view) => state.view === view;

function openJob(jobId) {
  if (state.view?.jobId === jobId) return;
  stopView();
  const view = newView(jobId);
  state.view = view;
  $("welcome").classList.add("hidden");
  $("job-view").classList.remove("hidden");
  resetJobView(view);
  loadJob(view);
}

function resetJobView(view) {
  $("job-header").replaceChildren(el("p", { class: "muted", text: `loading job ${view.jobId}…` }));
  $("job-empty").classList.add("hidden");
  for (const id of ["trials", "pareto", "parcoords"]) setChartEmpty(id, "loading…");
  $("recommendation").replaceChildren(el("h3", { text: "Recommendation" }),
    el("p", { class: "muted", text: "loading…" }));
  renderTrialDetails(view);
  $("front-table").tHead.replaceChildren();
  $("front-table").tBodies[0].replaceChildren();
  for (const id of ["front-summary", "front-common", "trials-summary", "parcoords-summary"]) {
    $(id).textContent = "";
  }
}

/** First load: the job, its trials so far; then follow it live until it ends. */
async function loadJob(view) {
  try {
    const job = await api(jobPath(view.jobId));
    if (!isCurrent(view)) return;
    applyJob(view, job);
    await refresh(view);
    if (isCurrent(view) && !TERMINAL.has(view.job.status)) follow(view);
  } catch (err) {
    if (!isCurrent(view)) return;
    if (err.status === 404) renderNotFound(view);
    else {
      showBanner(`Cannot load job ${view.jobId} (${err.message}); retrying…`);
      view.timer = setTimeout(() => loadJob(view), POLL_MS);
    }
  }
}

function applyJob(view, job) {
  view.job = job;
  syncJobList(job);
  ensureAxes(view);
  renderJobHeader(view);
  renderEmptyState(view);
}

/** Follow the job: server-sent events, or polling when the browser or the stream fails. */
function follow(view) {
  if (!window.EventSource) {
    poll(view);
    return;
  }
  const source = new EventSource(`${API}${jobPath(view.jobId)}/events`);
  view.source = source;
  source.addEventListener("progress", (ev) => onProgressEvent(view, ev));
  source.addEventListener("end", () => endStream(view));
  source.addEventListener("error", (ev) => onStreamError(view, ev));
}

function onProgressEvent(view, event) {
  if (!isCurrent(view)) return;
  let job;
  try {
    job = JSON.parse(event.data);
  } catch {
    return;
  }
  showBanner("");
  applyJob(view, job);
  refreshInBackground(view);
}

function endStream(view) {
  if (view.source) view.source.close();
  view.source = null;
  if (isCurrent(view)) refreshInBackground(view);
}

/** refresh() from an event: a failure shows a banner and is retried until the job is done. */
async function refreshInBackground(view) {
  try {
    await refresh(view);
  } catch (err) {
    if (!isCurrent(view)) return;
    showBanner(`Cannot refresh job ${view.jobId} (${err.message}); retrying…`);
    clearTimeout(view.retryTimer);
    view.retryTimer = setTimeout(() => refreshInBackground(view), POLL_MS);
  }
}

/** A dropped connection or the server's own `error` event: fall back to polling. */
function onStreamError(view, event) {
  if (!view.source) return;
  view.source.close();
  view.source = null;
  if (!isCurrent(view)) return;
  if (event.data) {
    renderNotFound(view);
    return;
  }
  poll(view);
}

async function poll(view) {
  try {
    applyJob(view, await api(jobPath(view.jobId)));
    await refresh(view);
    showBanner("");
  } catch (err) {
    if (!isCurrent(view)) return;
    if (err.status === 404) {
      renderNotFound(view);
      return;
    }
    showBanner(`Cannot refresh job ${view.jobId} (${err.message}); retrying…`);
  }
  if (isCurrent(view) && !view.finalized) view.timer = setTimeout(() => poll(view), POLL_MS);
}

/** The list lags behind the open job (new job, status change): refresh it now. */
function syncJobList(job) {
  const listed = state.jobs.find((j) => j.id === job.id);
  if (!listed || listed.status !== job.status) refreshJobs();
}

/** Fetch new trials (and, once the job has ended, its front and recommendation); render.
 * Calls that arrive while one runs are folded into one more pass. */
async function refresh(view) {
  if (view.refreshing) {
    view.dirty = true;
    return;
  }
  view.refreshing = true;
  try {
    do {
      view.dirty = false;
      const job = view.job; // trials are read after the job: a terminal job has them all
      await fetchNewTrials(view);
      if (!isCurrent(view)) return;
      if (TERMINAL.has(job.status) && !view.finalized) await finalize(view);
      if (!isCurrent(view)) return;
      renderTrialsPart(view);
    } while (view.dirty);
  } finally {
    view.refreshing = false;
  }
}

/** Fetch only the trials numbered after the last one we have (after=). When more than a
 * page is waiting, the next pages are fetched a few at a time (offsets past the same
 * ``after``: trials are only ever appended, so the pages cannot overlap), then once more
 * from the new last number in case trials landed meanwhile. */
async function fetchNewTrials(view) {
  for (;;) {
    const after = view.lastNumber;
    const first = await fetchTrialPage(view, after, 0);
    if (!first || first.items.length < PAGE_LIMIT) return;
    const pages = Math.ceil((first.total - view.trials.length) / PAGE_LIMIT);
    const offsets = Array.from({ length: Math.max(0, pages) }, (_, i) => (i + 1) * PAGE_LIMIT);
    if (!view.rendered) renderTrialsPart(view, true); // something on screen while the rest loads
    for (const batch of chunk(offsets, PARALLEL_PAGES)) {
      const results = await Promise.all(batch.map((offset) => fetchTrialPage(view, after, offset)));
      if (results.some((r) => !r)) return;
    }
  }
}

/** One page of trials, added to the view; null when the view was closed meanwhile. */
async function fetchTrialPage(view, after, offset) {
  const params = new URLSearchParams({ limit: PAGE_LIMIT, order_by: "number" });
  if (after !== null) params.set("after", after);
  if (offset) params.set("offset", offset);
  const page = await api(`${jobPath(view.jobId)}/trials?${params}`);
  if (!isCurrent(view)) return null;
  const items = asList(page);
  for (const trial of items) addTrial(view, trial);
  return { items, total: isNum(page.total) ? page.total : 0 };
}

function addTrial(view, trial) {
  if (view.byNumber.has(trial.number)) return;
  trial.flat = flattenConfig(trial.config);
  view.byNumber.set(trial.number, trial);
  view.trials.push(trial);
  for (const key of Object.keys(trial.flat)) view.knobKeys.add(key);
  for (const [name, value] of Object.entries(trial.metrics || {})) {
    if (isNum(value)) view.metricNames.add(name);
  }
  view.lastNumber = view.lastNumber === null ? trial.number : Math.max(view.lastNumber, trial.number);
}

/** The job has ended: fetch its front and, when there is one, its recommendation. */
async function finalize(view) {
  const { job } = view;
  const base = jobPath(view.jobId);
  if (job.status !== "failed") view.pareto = await unless404(api(`${base}/pareto`));
  if (job.best && isNum(job.best.trial_number)) {
    view.recommendation = await unless404(api(`${base}/recommendation`));
  }
  view.finalized = true;
}

/** Redraw what depends on the trials; ``partial`` (the first page of a big job, while the
 * others load) draws the two scatter charts only. */
function renderTrialsPart(view, partial = false) {
  view.rendered = true;
  refreshAxisChoices(view);
  renderEmptyState(view);
  renderTrialsChart(view);
  renderParetoChart(view);
  if (partial) return;
  renderRecommendation(view);
  renderFrontTable(view);
  scheduleParcoords(view);
  if (view.selected !== null) renderTrialDetails(view);
}

/** Draw the parallel coordinates once the other charts have painted. While the job runs,
 * at most every few seconds (longer when a draw is slow, as with software WebGL), one
 * pending draw picking up the latest trials; once it has ended, straight away. */
function scheduleParcoords(view) {
  if (view.finalized && view.parcoordsWait) {
    clearTimeout(view.parcoordsTimer);
    view.parcoordsTimer = null;
  }
  if (view.parcoordsTimer) return;
  const every = Math.max(PARCOORDS_EVERY_MS, 3 * view.parcoordsMs);
  const wait = view.finalized ? 0 : Math.max(0, view.lastParcoords + every - performance.now());
  view.parcoordsWait = wait > 0; // a throttled draw that the end of the job may cut short
  view.parcoordsTimer = setTimeout(() => requestAnimationFrame(() => {
    view.parcoordsWait = false;
    view.parcoordsTimer = setTimeout(() => {
      view.parcoordsTimer = null;
      if (!isCurrent(view)) return;
      view.lastParcoords = performance.now();
      renderParcoords(view);
      view.parcoordsMs = performance.now() - view.lastParcoords;
    }, 0);
  }), wait);
}

function renderNotFound(view) {
  if (view.source) view.source.close();
  view.source = null;
  $("job-header").replaceChildren(
    el("h2", { text: "Job not found" }),
    el("p", { class: "muted", text: `There is no job with id ${view.jobId}.` }),
    el("a", { href: "#/", text: "Back to the job list" }),
  );
  $("job-empty").classList.add("hidden");
  for (const id of ["trials", "pareto", "parcoords"]) setChartEmpty(id, "no such job");
  $("recommendation").replaceChildren();
}

/* ------------------------------------------------------------------ objectives, metrics, knobs */

function objectivesOf(job) {
  return (job?.spec?.objectives || []).filter((o) => o && o.metric);
}

function direction(job, name) {
  const objective = objectivesOf(job).find((o) => o.metric === name);
  return objective ? objective.direction : METRICS[name]?.dir || "max";
}

const lossOf = (dir, value) => (dir === "max" ? -value : value);

/** The metric the trial history plots: the first objective (else throughput for the kind). */
function primaryMetric(job) {
  return objectivesOf(job)[0]?.metric || (KIND_METRICS[job?.kind] || KIND_METRICS.training)[0];
}

/** Objectives first, then known metrics in their usual order, then any other the trials report. */
function metricChoices(view) {
  const seen = view.metricNames.size ? [...view.metricNames] : KIND_METRICS[view.job?.kind] || [];
  const known = Object.keys(METRICS).filter((m) => seen.includes(m));
  const other = seen.filter((m) => !(m in METRICS)).sort();
  return [...new Set([...objectivesOf(view.job).map((o) => o.metric), ...known, ...other])];
}

function orderedMetrics(view, metrics) {
  return [...new Set([...metricChoices(view), ...Object.keys(metrics)])]
    .filter((m) => isNum(metrics[m]));
}

/** The configuration keys seen so far, in display order (cached until a new key arrives). */
function knobKeys(view) {
  if (view.sortedKnobs?.length !== view.knobKeys.size) {
    view.sortedKnobs = [...view.knobKeys].sort(compareKnobs);
  }
  return view.sortedKnobs;
}

/** details.predicted / details.measured of a trial (profiling runs), or null. */
function overlayOf(trial) {
  const predicted = trial?.details?.predicted;
  const measured = trial?.details?.measured;
  const ok = (d) => d && typeof d === "object" && !Array.isArray(d);
  return ok(predicted) || ok(measured)
    ? { predicted: ok(predicted) ? predicted : {}, measured: ok(measured) ? measured : {} }
    : null;
}

/* ------------------------------------------------------------------ header, empty state */

function renderJobHeader(view) {
  const { job } = view;
  document.title = `${job.name || job.id} · paretune`;
  const spec = job.spec || {};
  const title = el("div", { class: "job-title" }, [
    el("h2", { text: job.name || job.id }),
    statusBadge(job.status, "job-status"),
    el("span", { class: "badge kind", text: job.kind }),
    !TERMINAL.has(job.status)
      ? el("button", { id: "cancel-job", class: "secondary small-button", type: "button",
        onclick: () => cancelJob(view), text: job.cancel_requested ? "Cancelling…" : "Cancel",
        disabled: job.cancel_requested })
      : null,
  ]);
  const facts = el("dl", { class: "facts" }, [
    fact("Model", modelName(spec)),
    fact("Cluster", clusterText(spec)),
    fact("Workload", workloadText(job.kind, spec.workload || {})),
    fact("Objectives", objectivesOf(job).map((o) => `${o.direction} ${o.metric}`).join(", ") || "–"),
    fact("Search", searchText(job)),
    fact("Sampler", samplerText(job)),
    fact("Time", timeText(job)),
    fact("Job id", job.id),
  ]);
  setChildren($("job-header"), title, progressBlock(job), facts,
    job.error ? el("p", { class: "callout error", text: job.error }) : null);
}

function fact(term, value) {
  return el("div", { class: "fact" }, [el("dt", { text: term }), el("dd", { text: value })]);
}

function workloadText(kind, w) {
  if (kind === "inference") {
    const load = isNum(w.concurrency) ? ` · ${w.concurrency} in flight`
      : isNum(w.request_rate) ? ` · ${w.request_rate} req/s` : "";
    return `input ${w.input_len ?? "?"} · output ${w.output_len ?? "?"} tokens${load}`;
  }
  return `seq ${w.seq_len ?? "?"} · global batch ${w.global_batch_size ?? "?"}`;
}

function searchText(job) {
  if (!job.search_mode) return job.status === "queued" ? "not planned yet" : "–";
  const n = isNum(job.space_size) ? fmtNum(job.space_size, 0) : null;
  if (job.search_mode === "sampled") {
    // The server stops counting the space past the exhaustive limit: the size is a floor.
    const space = n ? `a space of at least ${n} valid configurations` : "a large space";
    return `sampled: ${fmtNum(job.trials_planned, 0)} trials from ${space}`;
  }
  return `exhaustive over ${n ? `${n} valid configurations` : "the space"}`;
}

/** e.g. "auto: TPESampler · seed 0 · Optuna 5.0.0" once the job has run, else the spec's. */
function samplerText(job) {
  const run = job.best?.sampler;
  if (run && typeof run === "object") {
    const parts = [run.class ? `${run.name}: ${run.class}` : run.name || "?"];
    const seed = run.args?.seed ?? run.seed;
    if (run.class && seed !== undefined) parts.push(`seed ${seed}`);
    if (run.class && run.optuna_version) parts.push(`Optuna ${run.optuna_version}`);
    return parts.join(" · ");
  }
  if (job.search_mode === "exhaustive") return "exhaustive (every valid configuration)";
  const spec = job.spec?.sampler;
  return spec ? `${spec.name}${spec.seed !== undefined ? ` · seed ${spec.seed}` : ""}` : "–";
}

function timeText(job) {
  const start = job.started_at ? new Date(job.started_at) : null;
  if (!start) return `created ${fmtTime(job.created_at)}`;
  const end = job.finished_at ? new Date(job.finished_at) : new Date();
  const took = fmtDuration((end - start) / 1000);
  return `started ${fmtTime(job.started_at)} · ${job.finished_at ? "took" : "running for"} ${took}`;
}

function progressBlock(job) {
  const done = job.trials_done || 0;
  const planned = job.trials_planned || 0;
  const pct = planned ? Math.min(100, (100 * done) / planned) : 0;
  const counts = [
    ["done", done],
    ["planned", planned],
    ["infeasible", job.trials_infeasible || 0],
    ["failed", job.trials_failed || 0],
    ["pruned", job.trials_pruned || 0],
  ];
  return el("div", { class: "progress-block" }, [
    el("div", { class: "progress", role: "progressbar", "aria-valuenow": pct.toFixed(0),
      "aria-valuemin": 0, "aria-valuemax": 100 }, el("span", { style: `width:${pct.toFixed(1)}%` })),
    el("div", { class: "counts" }, counts.map(([label, n]) =>
      el("span", { class: `count count-${label}`, dataset: { count: label } },
        [el("b", { text: fmtNum(n, 0) }), ` ${label}`]))),
  ]);
}

async function cancelJob(view) {
  const button = $("cancel-job");
  if (button) button.disabled = true;
  try {
    applyJob(view, await api(`${jobPath(view.jobId)}/cancel`, { method: "POST" }));
  } catch (err) {
    showBanner(`Could not cancel the job: ${err.message}`);
  }
}

/** Before the first trial: say where the job is and what will appear. */
function renderEmptyState(view) {
  const box = $("job-empty");
  const { job } = view;
  if (!job || view.trials.length) {
    box.classList.add("hidden");
    return;
  }
  setChildren(box,
    el("h3", { text: emptyTitle(view) }),
    el("p", { text: emptyDetail(view) }),
    TERMINAL.has(job.status) ? null : el("ul", { class: "muted small" }, [
      el("li", { text: "The trial history plots each configuration's first objective as it is evaluated." }),
      el("li", { text: "The Pareto front and the table below fill in live; each row exports to a launch format." }),
      el("li", { text: "The recommendation and its launch command appear when the job succeeds." }),
    ]));
  box.classList.remove("hidden");
}

function emptyTitle(view) {
  const { status } = view.job;
  if (status === "queued") return "Queued: no trial yet";
  if (status === "running") return "Running: waiting for the first batch of trials";
  return `This job ${status === "succeeded" ? "finished" : `is ${status}`} without any trial`;
}

function emptyDetail(view) {
  const { job } = view;
  if (job.status === "queued") {
    const ahead = state.jobs.filter((j) => j.id !== job.id && j.status === "queued" &&
      new Date(j.created_at) < new Date(job.created_at)).length;
    const running = state.jobs.filter((j) => j.status === "running").length;
    return `It starts when a slot frees up: ${plural(running, "job")} running, ` +
      `${plural(ahead, "job")} queued ahead of it.`;
  }
  if (job.status === "running") {
    return job.trials_planned
      ? `Planned: ${searchText(job)}. Trials are stored batch by batch and appear here as they land.`
      : "Planning the search space…";
  }
  if (job.error) return job.error;
  if (job.status === "cancelled") return "It was cancelled before any trial finished.";
  return "Nothing was evaluated.";
}

/* ------------------------------------------------------------------ charts: common */

function setChartEmpty(id, message) {
  const chart = $(`${id}-chart`);
  if (plotly.ready && chart.classList.contains("js-plotly-plot")) Plotly.purge(chart);
  chart.classList.add("hidden");
  chart.dataset.points = "0";
  const empty = $(`${id}-empty`);
  empty.textContent = message;
  empty.classList.remove("hidden");
}

function emptyMessage(job) {
  if (!job) return "loading…";
  if (job.status === "queued") return "queued: waiting for the job to start…";
  if (job.status === "running") return "waiting for the first trial…";
  return job.error ? "no trials: the job failed before evaluating any" : "this job has no trials";
}

/* Plotly (3.5 MB) takes a second or more to parse: it is loaded here, after the page, so the
 * job and its trials download meanwhile; charts asked for before it is ready are drawn
 * when it is. */
const plotly = { ready: false, failed: false };

function loadPlotly() {
  const script = el("script", { src: "/static/plotly.min.js" });
  script.addEventListener("load", () => {
    plotly.ready = Boolean(window.Plotly);
    plotly.failed = !plotly.ready;
    redrawCharts();
  });
  script.addEventListener("error", () => {
    plotly.failed = true;
    redrawCharts();
  });
  document.head.append(script);
}

function redrawCharts() {
  const view = state.view;
  if (!view || !view.rendered) return;
  view.parcoordsSignature = "";
  renderTrialsPart(view, view.refreshing); // a refresh under way draws the rest when done
}

/** Plot (or re-plot) traces into a chart box; returns false when Plotly is not there (yet). */
function plot(id, traces, layout, pointCount, extraConfig = {}) {
  const chart = $(`${id}-chart`);
  if (!plotly.ready) {
    setChartEmpty(id, plotly.failed
      ? "charts unavailable: /static/plotly.min.js did not load"
      : "drawing the chart…");
    return false;
  }
  $(`${id}-empty`).classList.add("hidden");
  chart.classList.remove("hidden");
  chart.dataset.points = String(pointCount);
  chart.dataset.drawnMs = String(Math.round(performance.now())); // since navigation start
  const config = {
    displaylogo: false,
    responsive: true,
    modeBarButtonsToRemove: ["select2d", "lasso2d"],
    ...extraConfig,
  };
  Plotly.react(chart, traces, layout, config);
  if (!chart.dataset.clickBound) {
    chart.on("plotly_click", (ev) => onPointClick(ev));
    chart.dataset.clickBound = "1";
  }
  return true;
}

function baseLayout(view, xTitle, yTitle, revision) {
  const axis = (text) => ({
    title: { text: escapeHtml(text) },
    zeroline: false,
    gridcolor: "#e8ebf0",
    linecolor: "#c9ced6",
    automargin: true,
  });
  return {
    margin: { l: 10, r: 12, t: 8, b: 10 },
    xaxis: axis(xTitle),
    yaxis: axis(yTitle),
    hovermode: "closest",
    hoverlabel: { align: "left", bgcolor: "#ffffff", bordercolor: "#c9ced6", font: { color: "#1f2937" } },
    legend: { orientation: "h", x: 0, y: -0.22, yanchor: "top" },
    plot_bgcolor: "#ffffff",
    paper_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, 'Segoe UI', sans-serif", size: 12, color: "#374151" },
    uirevision: `${view.jobId}:${revision}`, // keep the user's zoom across live updates
  };
}

/** "scattergl" for big traces when WebGL is there (SVG stalls beyond a few thousand points). */
const scatterType = (count) => (count > GL_POINTS && hasWebGl() ? "scattergl" : "scatter");

function category(trial) {
  if (trial.state === "failed") return "failed";
  if (trial.state === "pruned") return "pruned";
  return trial.feasible ? "feasible" : "infeasible";
}

/** The metrics a hover label lists: the Pareto axes and the first objectives (one list for
 * every chart, so each trial's label is built once). */
function hoverMetrics(view) {
  return [...new Set([view.axes.x, view.axes.y, ...metricChoices(view).slice(0, 3)])];
}

/** Hover label (cached per trial: 20,000 labels take a while to build). */
function hoverText(view, trial, metrics) {
  const key = `${knobKeys(view).length}|${metrics.join(",")}`;
  trial.hover ||= new Map();
  if (!trial.hover.has(key)) trial.hover.set(key, buildHoverText(view, trial, metrics));
  return trial.hover.get(key);
}

/** The trial, its configuration (a few knobs per line) and the given metrics. */
function buildHoverText(view, trial, metrics) {
  const keys = knobKeys(view).filter((k) => k in trial.flat);
  const lines = [
    `<b>trial #${trial.number}</b> · ${escapeHtml(category(trial))}`,
    ...chunk(keys, 5).map((part) => escapeHtml(knobsText(trial.flat, part))),
  ];
  const overlay = overlayOf(trial);
  for (const m of metrics) {
    const v = trial.metrics?.[m];
    if (isNum(v)) lines.push(`${escapeHtml(metricLabel(m))}: ${escapeHtml(fmtMetric(m, v))}`);
    if (overlay) lines.push(...overlayHover(overlay, m));
  }
  for (const v of (trial.violations || []).slice(0, 3)) lines.push(`<i>${escapeHtml(v)}</i>`);
  if (trial.error) lines.push(`<i>${escapeHtml(trial.error.slice(0, 160))}</i>`);
  return lines.join("<br>");
}

function overlayHover(overlay, m) {
  const parts = ["predicted", "measured"]
    .filter((k) => isNum(overlay[k][m]))
    .map((k) => `${k} ${escapeHtml(fmtMetric(m, overlay[k][m]))}`);
  return parts.length ? [`&nbsp;&nbsp;${parts.join(" · ")}`] : [];
}

/* ------------------------------------------------------------------ trial history */

function renderTrialsChart(view) {
  const { trials, job } = view;
  if (!trials.length) {
    setChartEmpty("trials", emptyMessage(job));
    return;
  }
  const name = primaryMetric(job);
  const metrics = hoverMetrics(view);
  const markerSize = trials.length > GL_POINTS ? 4 : 7;
  const traces = [];
  for (const [cat, style] of Object.entries(CATEGORIES)) {
    const group = trials.filter((t) => category(t) === cat);
    if (!group.length) continue;
    traces.push({
      type: scatterType(group.length),
      mode: "markers",
      name: `${style.label} (${fmtNum(group.length, 0)})`,
      meta: "trials",
      x: group.map((t) => t.number),
      y: group.map((t) => (isNum(t.metrics?.[name]) ? plotValue(name, t.metrics[name]) : 0)),
      customdata: group.map((t) => t.number),
      text: group.map((t) => hoverText(view, t, metrics)),
      hovertemplate: "%{text}<extra></extra>",
      marker: { color: style.color, symbol: style.symbol, size: markerSize, opacity: 0.85 },
    });
  }
  traces.push(bestSoFarTrace(trials, name, direction(job, name)));
  const better = direction(job, name) === "max" ? "higher" : "lower";
  const layout = baseLayout(view, "trial number", `${metricLabel(name)} · ${better} is better`, "trials");
  layout.yaxis.rangemode = "tozero";
  plot("trials", traces, layout, trials.length);
  $("trials-summary").textContent = plural(trials.length, "trial");
  $("trials-note").textContent = `${metricLabel(name)} (the first objective) of each evaluated ` +
    "configuration, in the order it was tried. Infeasible: out of memory or over a limit; " +
    "failed trials sit at zero. Click a point to open it.";
}

/** Running best of the feasible trials, as a step line (not counted as points). */
function bestSoFarTrace(trials, name, dir) {
  const x = [];
  const y = [];
  let best = null;
  for (const t of [...trials].sort((a, b) => a.number - b.number)) {
    const v = t.metrics?.[name];
    if (t.state === "complete" && t.feasible && isNum(v) &&
      (best === null || lossOf(dir, v) < lossOf(dir, best))) best = v;
    if (best !== null) {
      x.push(t.number);
      y.push(plotValue(name, best));
    }
  }
  return {
    type: scatterType(x.length),
    mode: "lines",
    name: "best feasible so far",
    meta: "guide",
    x,
    y,
    line: { color: "#16a34a", width: 2, shape: "hv" },
    hoverinfo: "skip",
  };
}

/* ------------------------------------------------------------------ Pareto */

function dominates(a, b) {
  let strictly = false;
  for (let i = 0; i < a.length; i += 1) {
    if (a[i] > b[i]) return false;
    if (a[i] < b[i]) strictly = true;
  }
  return strictly;
}

function compareTuples(a, b) {
  for (let i = 0; i < a.length; i += 1) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return 0;
}

/** Indices of the non-dominated loss vectors, one per distinct vector (as tuner/pareto.py). */
function paretoIndices(losses) {
  const order = losses.map((_, i) => i).sort((a, b) => compareTuples(losses[a], losses[b]) || a - b);
  const front = [];
  const seen = new Set();
  for (const i of order) {
    const key = losses[i].join(",");
    if (seen.has(key)) continue;
    if (front.some((j) => dominates(losses[j], losses[i]))) continue;
    front.push(i);
    seen.add(key);
  }
  return front.sort((a, b) => a - b);
}

/** Feasible complete trials that are non-dominated on ``metrics``. */
function frontOf(trials, job, metrics) {
  const candidates = trials.filter((t) =>
    t.state === "complete" && t.feasible && metrics.every((m) => isNum(t.metrics?.[m])));
  const dirs = metrics.map((m) => direction(job, m));
  const losses = candidates.map((t) => metrics.map((m, i) => lossOf(dirs[i], t.metrics[m])));
  return paretoIndices(losses).map((i) => candidates[i]);
}

/** Default axes: the job's first two objectives; set once per view. */
function ensureAxes(view) {
  if (view.axes) return;
  const choices = metricChoices(view);
  const objectives = objectivesOf(view.job).map((o) => o.metric);
  const x = objectives[0] || choices[0];
  const y = objectives[1] || choices.find((m) => m !== x && m.startsWith("memory")) ||
    choices.find((m) => m !== x);
  view.axes = { x, y };
  refreshAxisChoices(view);
}

/** (Re)fill the axis pickers when the set of metrics changes; keep the picked axes. */
function refreshAxisChoices(view) {
  const choices = metricChoices(view);
  const signature = choices.join(",");
  if (!view.axes || signature === view.axisSignature) return;
  view.axisSignature = signature;
  for (const [axis, select] of [["x", $("pareto-x")], ["y", $("pareto-y")]]) {
    const picked = view.axes[axis];
    const options = choices.includes(picked) ? choices : [picked, ...choices];
    fillSelect(select, options.map((m) => ({ value: m, label: metricLabel(m) })), picked);
  }
}

function onAxisChange() {
  const view = state.view;
  if (!view || !view.axes) return;
  view.axes = { x: $("pareto-x").value, y: $("pareto-y").value };
  renderParetoChart(view);
}

function renderParetoChart(view) {
  const { trials, job, axes } = view;
  const { x, y } = axes;
  const points = trials.filter((t) =>
    t.state === "complete" && isNum(t.metrics?.[x]) && isNum(t.metrics?.[y]));
  if (!points.length) {
    setChartEmpty("pareto", trials.length ? "no trial has both metrics yet" : emptyMessage(job));
    return;
  }
  const front = frontOf(points, job, [x, y]);
  const onFront = new Set(front.map((t) => t.number));
  const recommended = view.recommendation?.trial_number;
  const groups = { front: [], dominated: [], infeasible: [], recommended: [] };
  for (const t of points) {
    if (t.number === recommended) groups.recommended.push(t);
    else if (!t.feasible) groups.infeasible.push(t);
    else groups[onFront.has(t.number) ? "front" : "dominated"].push(t);
  }
  const traces = [
    paretoTrace(view, groups.infeasible, `infeasible (${fmtNum(groups.infeasible.length, 0)})`,
      { color: "#d1d5db", symbol: "x-thin-open", size: 7, line: { color: "#c2c7cf", width: 1.5 } }),
    paretoTrace(view, groups.dominated, `dominated (${fmtNum(groups.dominated.length, 0)})`,
      { color: "#a3aab5", size: 7, opacity: 0.6 }),
    frontLineTrace(front, axes),
    paretoTrace(view, groups.front, `Pareto front (${front.length})`,
      { color: "#16a34a", size: 10, line: { color: "#ffffff", width: 1 } }),
    paretoTrace(view, groups.recommended, "recommended",
      { color: "#16a34a", size: 17, symbol: "star", line: { color: "#ffffff", width: 1 } }),
    ...overlayTraces(view, points, axes),
  ].filter(Boolean);
  const dirNote = (m) => `${metricLabel(m)} · ${direction(job, m) === "max" ? "higher" : "lower"} is better`;
  const layout = baseLayout(view, dirNote(x), dirNote(y), `pareto:${x}:${y}`);
  frameFeasible(layout, points, axes);
  plot("pareto", traces, layout, points.length);
}

/** Frame the feasible points: far-out infeasible ones would squash the front into a corner. */
function frameFeasible(layout, points, { x, y }) {
  const feasible = points.filter((t) => t.feasible);
  if (!feasible.length || feasible.length === points.length) return;
  layout.xaxis.range = paddedRange(feasible.map((t) => plotValue(x, t.metrics[x])));
  layout.yaxis.range = paddedRange(feasible.map((t) => plotValue(y, t.metrics[y])));
}

function paddedRange(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const pad = hi > lo ? (hi - lo) * 0.08 : Math.abs(hi) * 0.1 || 1;
  return [lo - pad, hi + pad];
}

function paretoTrace(view, trials, name, marker) {
  if (!trials.length) return null;
  const { x, y } = view.axes;
  const metrics = hoverMetrics(view);
  return {
    type: scatterType(trials.length),
    mode: "markers",
    name,
    meta: "trials",
    x: trials.map((t) => plotValue(x, t.metrics[x])),
    y: trials.map((t) => plotValue(y, t.metrics[y])),
    customdata: trials.map((t) => t.number),
    text: trials.map((t) => hoverText(view, t, metrics)),
    hovertemplate: "%{text}<extra></extra>",
    marker,
  };
}

/** The staircase through the front (a guide: not counted as points, no hover). */
function frontLineTrace(front, { x, y }) {
  if (front.length < 2) return null;
  const sorted = [...front].sort((a, b) => a.metrics[x] - b.metrics[x]);
  return {
    type: "scatter",
    mode: "lines",
    name: "front",
    showlegend: false,
    meta: "guide",
    x: sorted.map((t) => plotValue(x, t.metrics[x])),
    y: sorted.map((t) => plotValue(y, t.metrics[y])),
    line: { color: "#16a34a", width: 2 },
    hoverinfo: "skip",
  };
}

/** Predicted and measured positions of profiled trials, joined by a thin dotted line. */
function overlayTraces(view, points, axes) {
  const pairs = overlayPairs(points, axes);
  if (!pairs.length) return [];
  return [
    overlayLinks(pairs),
    overlaySeries(view, pairs, "predicted"),
    overlaySeries(view, pairs, "measured"),
  ].filter(Boolean);
}

/** [{trial, predicted: [x, y] | null, measured: [x, y] | null}] in plotted units. */
function overlayPairs(points, { x, y }) {
  const position = (values) => (isNum(values[x]) && isNum(values[y])
    ? [plotValue(x, values[x]), plotValue(y, values[y])] : null);
  const pairs = [];
  for (const trial of points) {
    const overlay = overlayOf(trial);
    if (!overlay) continue;
    const pair = { trial, predicted: position(overlay.predicted), measured: position(overlay.measured) };
    if (pair.predicted || pair.measured) pairs.push(pair);
  }
  return pairs;
}

function overlayLinks(pairs) {
  const both = pairs.filter((p) => p.predicted && p.measured);
  if (!both.length) return null;
  return {
    type: "scatter",
    mode: "lines",
    name: "predicted → measured",
    meta: "guide",
    showlegend: false,
    hoverinfo: "skip",
    x: both.flatMap((p) => [p.predicted[0], p.measured[0], null]),
    y: both.flatMap((p) => [p.predicted[1], p.measured[1], null]),
    line: { color: "#c4b5fd", width: 1, dash: "dot" },
  };
}

function overlaySeries(view, pairs, kind) {
  const rows = pairs.filter((p) => p[kind]);
  if (!rows.length) return null;
  const metrics = hoverMetrics(view);
  return {
    type: "scatter",
    mode: "markers",
    name: `${kind} (${rows.length})`,
    meta: "overlay",
    x: rows.map((p) => p[kind][0]),
    y: rows.map((p) => p[kind][1]),
    customdata: rows.map((p) => p.trial.number),
    text: rows.map((p) => `<i>${kind}</i><br>${hoverText(view, p.trial, metrics)}`),
    hovertemplate: "%{text}<extra></extra>",
    marker: { ...OVERLAY[kind], line: { color: OVERLAY[kind].color, width: 1.5 } },
  };
}

/* ------------------------------------------------------------------ parallel coordinates */

/** The lines to draw: the whole front plus an even sample of the other feasible trials. */
function parcoordsTrials(view, name) {
  const feasible = view.trials.filter((t) =>
    t.state === "complete" && t.feasible && isNum(t.metrics?.[name]));
  const onFront = new Set(currentFront(view).points.map((p) => p.trial_number));
  const front = feasible.filter((t) => onFront.has(t.number));
  const others = evenSample(feasible.filter((t) => !onFront.has(t.number)), PARCOORDS_SAMPLE);
  return { lines: [...front, ...others], front: front.length, feasible: feasible.length };
}

function renderParcoords(view) {
  const { job } = view;
  const name = primaryMetric(job);
  const { lines, front, feasible } = parcoordsTrials(view, name);
  const signature = `${view.trials.length}:${lines.length}:${front}:${Boolean(view.pareto)}`;
  if (signature === view.parcoordsSignature) return;
  view.parcoordsSignature = signature;
  if (!lines.length) {
    setChartEmpty("parcoords", view.trials.length ? "no feasible configuration yet" : emptyMessage(job));
    return;
  }
  const knobs = knobKeys(view).filter((k) => new Set(lines.map((t) => fmtKnob(t.flat[k]))).size > 1);
  const objectives = objectivesOf(job).map((o) => o.metric);
  const dimensions = [
    ...knobs.map((k) => knobDimension(k, lines)),
    ...(objectives.length ? objectives : [name]).map((m) => metricDimension(m, lines)),
  ];
  const dir = direction(job, name);
  const trace = {
    type: "parcoords",
    meta: "lines",
    dimensions,
    line: {
      color: lines.map((t) => plotValue(name, t.metrics[name])),
      colorscale: "Viridis",
      reversescale: dir === "min", // yellow is always the better end
      showscale: true,
      colorbar: { title: { text: escapeHtml(metricShort(name)), side: "right" }, thickness: 12 },
    },
    labelangle: dimensions.length > 9 ? -18 : 0, // long labels of many axes would overlap
    labelfont: { size: 11 },
    tickfont: { size: 10 },
  };
  const layout = {
    margin: { l: 60, r: 70, t: 48, b: 24 },
    paper_bgcolor: "rgba(0,0,0,0)",
    font: { family: "system-ui, -apple-system, 'Segoe UI', sans-serif", size: 12, color: "#374151" },
    uirevision: `${view.jobId}:parcoords`,
  };
  // Plotly draws WebGL lines at twice the screen's resolution by default: four times the
  // pixels for nothing on an ordinary screen (and seconds without a GPU).
  const ratio = Math.min(2, Math.max(1, Math.round(window.devicePixelRatio || 1)));
  plot("parcoords", [trace], layout, lines.length, { plotGlPixelRatio: ratio });
  $("parcoords-summary").textContent = plural(lines.length, "line");
  $("parcoords-note").textContent = parcoordsNote(name, lines.length, front, feasible, knobs.length);
}

function parcoordsNote(name, shown, front, feasible, knobCount) {
  const what = shown < feasible
    ? `${fmtNum(shown, 0)} of ${fmtNum(feasible, 0)} feasible configurations: the whole front ` +
      `(${front}) and an even sample of ${fmtNum(shown - front, 0)} others, to keep the page responsive`
    : `all ${plural(feasible, "feasible configuration")}`;
  const knobs = knobCount
    ? `the ${knobCount} knobs that vary, then the objectives`
    : "the objectives (no knob varies)";
  return `One line per configuration (${what}) across ${knobs}; colour: ${metricLabel(name)}, ` +
    "yellow is better. Drag along an axis to filter.";
}

/** A knob axis: numbers as they are, anything else as category indices with tick labels. */
function knobDimension(key, lines) {
  const raw = lines.map((t) => t.flat[key]);
  const label = escapeHtml(knobLabel(key));
  if (raw.every(isNum)) {
    const distinct = [...new Set(raw)].sort((a, b) => a - b);
    const ticks = distinct.length <= 12 ? { tickvals: distinct, ticktext: distinct.map(String) } : {};
    return { label, values: raw, ...ticks };
  }
  const categories = orderCategories(key, [...new Set(raw.map(fmtKnob))]);
  const index = new Map(categories.map((c, i) => [c, i]));
  return {
    label,
    values: raw.map((v) => index.get(fmtKnob(v))),
    tickvals: categories.map((_, i) => i),
    ticktext: categories.map(escapeHtml),
    range: [0, categories.length - 1],
  };
}

function orderCategories(key, values) {
  const leaf = key.split(".").pop();
  const natural = VALUE_ORDER[leaf] || ["off", "on", "auto"];
  const rank = (v) => (natural.includes(v) ? natural.indexOf(v) : natural.length);
  return values.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b, "en", { numeric: true }));
}

function metricDimension(name, lines) {
  return {
    label: escapeHtml(metricShort(name)),
    tickformat: ".3~s",
    values: lines.map((t) => (isNum(t.metrics[name]) ? plotValue(name, t.metrics[name]) : null)),
  };
}

/* ------------------------------------------------------------------ recommendation */

/** The card is rebuilt only when what it says changes (a rebuild would reset the Copy
 * button and any text the user is selecting). */
function renderRecommendation(view) {
  const box = $("recommendation");
  const { job, recommendation } = view;
  const key = JSON.stringify([recommendation?.trial_number, job.status, job.best?.note, job.error]);
  if (key === view.recommendationKey) return;
  view.recommendationKey = key;
  const heading = el("h3", { text: "Recommendation" });
  if (recommendation) {
    box.replaceChildren(heading, ...recommendationBody(view, recommendation));
    return;
  }
  box.replaceChildren(heading, el("p", { class: "muted", text: noRecommendationText(job) }));
}

function noRecommendationText(job) {
  if (job.status === "failed") {
    return `No recommendation: the job failed${job.error ? `: ${job.error}` : "."}`;
  }
  if (job.best?.note) return `No recommendation: ${job.best.note}.`;
  if (job.status === "cancelled") {
    return "No recommendation: the job was cancelled before any configuration fit.";
  }
  return "The recommendation and its launch command appear when the job has finished.";
}

function recommendationBody(view, rec) {
  const launch = rec.launch || {};
  const formats = Object.keys(launch);
  if (!formats.includes(view.launchFormat)) view.launchFormat = formats[0] || null;
  const format = view.launchFormat;
  return [
    el("p", { class: "rec-title" }, [
      el("span", { class: "star", text: "★" }),
      ` trial #${rec.trial_number}`,
    ]),
    el("div", { class: "chips" }, configChips(flattenConfig(rec.config))),
    metricGrid(orderedMetrics(view, rec.metrics || {}), rec.metrics),
    el("p", { class: "reason", text: rec.reason || "" }),
    el("div", { class: "launch-head" }, [
      el("label", { class: "launch-label" }, [
        el("h4", { text: "Launch" }),
        formats.length > 1
          ? launchFormatSelect(view, formats, format)
          : el("span", { class: "muted", text: format || "none" }),
      ]),
      el("span", { class: "button-row" }, [
        el("button", { id: "copy-launch", class: "secondary small-button", type: "button",
          onclick: (ev) => copyText(launch[view.launchFormat] || "", ev.currentTarget, $("launch-command")),
          text: "Copy" }),
        exportButton(view, rec.trial_number, "export-recommended"),
      ]),
    ]),
    el("pre", { id: "launch-command", "data-testid": "launch-command", class: "launch",
      text: format ? launch[format] : "this job's kind has no launch format" }),
  ];
}

function launchFormatSelect(view, formats, format) {
  const select = el("select", { id: "launch-format", "aria-label": "launch format",
    onchange: (ev) => {
      view.launchFormat = ev.target.value;
      $("launch-command").textContent = view.recommendation.launch[view.launchFormat];
    } });
  fillSelect(select, formats.map((f) => ({ value: f, label: f })), format);
  return select;
}

function metricGrid(names, values) {
  return el("dl", { class: "metric-grid" }, names.map((m) => el("div", {}, [
    el("dt", { text: metricLabel(m) }),
    el("dd", { text: fmtMetric(m, values[m]) }),
  ])));
}

function configChips(flat) {
  return Object.keys(flat).sort(compareKnobs).map((k) =>
    el("span", { class: "chip" }, [
      el("span", { class: "chip-key", text: knobLabel(k) }),
      ` ${fmtKnob(flat[k])}`,
    ]));
}

/** Copy to the clipboard; when the Clipboard API is refused, select ``node`` and copy that. */
async function copyText(text, button, node) {
  button.dataset.copied = "";
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    ok = node ? copyBySelection(node) : false;
  }
  button.textContent = ok ? "Copied" : "Select and press Ctrl+C";
  button.dataset.copied = ok ? "1" : "";
  setTimeout(() => { button.textContent = "Copy"; }, 1500);
}

function copyBySelection(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  try {
    return document.execCommand("copy");
  } catch {
    return false;
  }
}

/* ------------------------------------------------------------------ front table */

/** The server's front once the job has ended; until then the live front of the trials so far. */
function currentFront(view) {
  if (view.pareto) {
    return { provisional: false, points: view.pareto.points || [], objectives: view.pareto.objectives || [] };
  }
  const objectives = objectivesOf(view.job);
  const metrics = objectives.map((o) => o.metric);
  const points = metrics.length
    ? frontOf(view.trials, view.job, metrics).map((t) => (
      { trial_number: t.number, config: t.config, metrics: t.metrics }))
    : [];
  return { provisional: true, points, objectives };
}

function renderFrontTable(view) {
  const table = $("front-table");
  const { provisional, points, objectives } = currentFront(view);
  const sorted = sortByFirstObjective(points, objectives[0]);
  const shown = sorted.slice(0, FRONT_ROWS);
  const flats = shown.map((p) => view.byNumber.get(p.trial_number)?.flat || flattenConfig(p.config));
  const { knobs, common } = splitKnobs(flats);
  $("front-common").textContent = common.length
    ? `Same in every row: ${knobsText(flats[0], common)}`
    : "";
  const columns = frontColumns(view, shown, objectives);
  table.tHead.replaceChildren(frontHeader(knobs, columns));
  const recommended = view.recommendation?.trial_number;
  const rows = shown.map((p, i) =>
    frontRow(view, p, flats[i], knobs, columns, p.trial_number === recommended));
  if (!rows.length) {
    const span = 2 + knobs.length + columns.length;
    rows.push(el("tr", { class: "empty-row" }, el("td", { colspan: span, text: frontEmptyText(view) })));
  }
  table.tBodies[0].replaceChildren(...rows);
  $("front-summary").textContent = frontSummary(points.length, shown.length, provisional);
}

function sortByFirstObjective(points, first) {
  const key = (p) => (first && isNum(p.metrics?.[first.metric])
    ? lossOf(first.direction, p.metrics[first.metric]) : Infinity);
  return [...points].sort((a, b) => key(a) - key(b) || a.trial_number - b.trial_number);
}

function frontSummary(total, shown, provisional) {
  if (!total) return "";
  const all = plural(total, "configuration");
  const head = shown < total ? `first ${shown} of ${all}` : all;
  return head + (provisional ? " · provisional, from the trials so far" : "");
}

/** Metric columns: objectives, then other metrics; predicted/measured next to an objective
 * when some row of the front carries them. */
function frontColumns(view, points, objectives) {
  const names = [...new Set([...objectives.map((o) => o.metric), ...metricChoices(view)])]
    .filter((m) => points.some((p) => isNum(p.metrics?.[m])))
    .slice(0, FRONT_METRIC_COLUMNS);
  const overlays = points.map((p) => overlayOf(view.byNumber.get(p.trial_number))).filter(Boolean);
  const columns = [];
  for (const m of names) {
    columns.push({ metric: m, source: "value" });
    if (!objectives.some((o) => o.metric === m)) continue;
    for (const source of ["predicted", "measured"]) {
      if (overlays.some((o) => isNum(o[source][m]))) columns.push({ metric: m, source });
    }
  }
  return columns;
}

const COLUMN_SHORT = { value: "", predicted: "pred.", measured: "meas." };
const columnClass = (c) => (c.source === "value" ? "num" : "num overlay-col");

function frontHeader(knobs, columns) {
  const th = (c) => el("th", {
    class: columnClass(c),
    text: c.source === "value" ? metricShort(c.metric) : COLUMN_SHORT[c.source],
    title: c.source === "value" ? metricLabel(c.metric) : `${c.source} ${metricLabel(c.metric)}`,
  });
  return el("tr", {}, [
    el("th", { text: "trial" }),
    el("th", { text: "export" }),
    ...knobs.map((k) => el("th", { text: knobLabel(k), title: k })),
    ...columns.map(th),
  ]);
}

/** Knobs that differ between the rows get a column; the rest are listed once above. */
function splitKnobs(flats) {
  const present = [...new Set(flats.flatMap((f) => Object.keys(f)))].sort(compareKnobs);
  if (flats.length < 2) return { knobs: present, common: [] };
  const differs = (k) => new Set(flats.map((f) => fmtKnob(f[k]))).size > 1;
  return { knobs: present.filter(differs), common: present.filter((k) => !differs(k)) };
}

function frontEmptyText(view) {
  if (!view.trials.length) return emptyMessage(view.job);
  return "no feasible configuration yet (every trial so far is out of memory, failed or over a limit)";
}

function frontRow(view, point, flat, knobs, columns, recommended) {
  const overlay = overlayOf(view.byNumber.get(point.trial_number));
  const valueOf = (c) =>
    (c.source === "value" ? point.metrics?.[c.metric] : overlay?.[c.source]?.[c.metric]);
  const cell = (c) => el("td", { class: columnClass(c), text: fmtMetric(c.metric, valueOf(c)) });
  const star = recommended ? el("span", { class: "star", text: " ★" }) : null;
  return el("tr", {
    class: recommended ? "recommended" : null,
    dataset: { trialNumber: point.trial_number },
    onclick: () => selectTrial(point.trial_number),
    title: recommended ? "recommended configuration" : null,
  }, [
    el("td", { class: "nowrap" }, [`#${point.trial_number}`, star]),
    el("td", {}, exportButton(view, point.trial_number)),
    ...knobs.map((k) => el("td", { text: fmtKnob(flat[k]) })),
    ...columns.map(cell),
  ]);
}

/* ------------------------------------------------------------------ exports */

function exportButton(view, number, id) {
  return el("button", {
    id,
    class: "secondary small-button export-button",
    type: "button",
    "aria-haspopup": "menu",
    dataset: { trialNumber: number },
    text: "Export ▾",
    onclick: (ev) => {
      ev.stopPropagation();
      toggleExportMenu(view, number, ev.currentTarget);
    },
  });
}

/** Launch formats of this job's kind, as the recommendation route lists them, plus yaml/json. */
async function exportFormats(view, number) {
  if (!view.formats) {
    const rec = view.recommendation ||
      await api(`${jobPath(view.jobId)}/recommendation?trial=${encodeURIComponent(number)}`);
    view.formats = [...Object.keys(rec.launch || {}), "yaml", "json"];
  }
  return view.formats;
}

async function toggleExportMenu(view, number, anchor) {
  if (state.menu?.anchor === anchor) {
    closeExportMenu();
    return;
  }
  const menu = $("export-menu");
  state.menu = { number, anchor };
  menu.replaceChildren(el("p", { class: "menu-note", text: `trial #${number}: loading formats…` }));
  placeMenu(menu, anchor);
  try {
    const formats = await exportFormats(view, number);
    if (state.menu?.anchor !== anchor) return;
    menu.replaceChildren(el("p", { class: "menu-note", text: `Export trial #${number} as` }),
      ...formats.map((format) => menuItem(view, number, format)));
    placeMenu(menu, anchor);
    menu.querySelector("button")?.focus();
  } catch (err) {
    if (state.menu?.anchor !== anchor) return;
    menu.replaceChildren(el("p", { class: "menu-note error", text: `cannot export: ${err.message}` }));
  }
}

function menuItem(view, number, format) {
  return el("button", {
    type: "button",
    role: "menuitem",
    dataset: { format },
    text: format,
    onclick: (ev) => {
      ev.stopPropagation();
      closeExportMenu();
      showExport(view, number, format);
    },
  });
}

function placeMenu(menu, anchor) {
  const box = anchor.getBoundingClientRect();
  menu.classList.remove("hidden");
  const width = menu.offsetWidth;
  menu.style.top = `${window.scrollY + box.bottom + 4}px`;
  menu.style.left = `${Math.max(8, window.scrollX + box.right - width)}px`;
  anchor.setAttribute("aria-expanded", "true");
}

function closeExportMenu() {
  if (!state.menu) return;
  state.menu.anchor.setAttribute("aria-expanded", "false");
  state.menu = null;
  $("export-menu").classList.add("hidden");
}

/** Fetch one trial in one launch format and show it in the export panel. */
async function showExport(view, number, format) {
  const seq = ++view.exportSeq;
  const query = new URLSearchParams({ trial: number, format });
  const path = `${jobPath(view.jobId)}/recommendation?${query}`;
  $("export-panel").classList.remove("hidden");
  $("export-panel").dataset.trialNumber = String(number);
  $("export-panel").dataset.format = format;
  $("export-title").textContent = `Export · trial #${number} · ${format}`;
  $("export-note").textContent = "loading…";
  $("export-text").textContent = "";
  $("export-panel").scrollIntoView({ block: "nearest" });
  try {
    const raw = await apiText(path);
    if (seq !== view.exportSeq || !isCurrent(view)) return;
    const text = format === "json" ? JSON.stringify(JSON.parse(raw), null, 2) : raw;
    $("export-text").textContent = text;
    $("export-note").textContent = `GET ${API}${path}`;
    setDownload(text, `trial${number}-${format}.${fileExtension(format, text)}`);
  } catch (err) {
    if (seq !== view.exportSeq) return;
    $("export-note").textContent = `Could not export trial #${number} as ${format}: ${err.message}`;
  }
}

function fileExtension(format, text) {
  if (text.startsWith("#!")) return "sh";
  try {
    JSON.parse(text);
    return "json";
  } catch {
    return format === "yaml" ? "yaml" : "txt";
  }
}

function setDownload(text, filename) {
  const link = $("download-export");
  if (link.dataset.url) URL.revokeObjectURL(link.dataset.url);
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  link.dataset.url = url;
  link.href = url;
  link.download = filename;
}

/* ------------------------------------------------------------------ trial details */

function onPointClick(event) {
  const number = event.points?.[0]?.customdata;
  if (number !== undefined) selectTrial(number);
}

function selectTrial(number) {
  const view = state.view;
  if (!view) return;
  view.selected = number;
  renderTrialDetails(view);
  for (const row of document.querySelectorAll("#front-table tbody tr[data-trial-number]")) {
    row.classList.toggle("selected", Number(row.dataset.trialNumber) === number);
  }
}

const TRIAL_HINT = "Click a point in a chart or a row of the front to see its trial.";

function renderTrialDetails(view) {
  const box = $("trial-details");
  const heading = el("h3", { text: "Trial details" });
  const trial = view.byNumber.get(view.selected);
  if (!trial) {
    box.replaceChildren(heading, el("p", { class: "muted", text: TRIAL_HINT }));
    return;
  }
  const metrics = orderedMetrics(view, trial.metrics || {});
  setChildren(
    box,
    el("div", { class: "launch-head" }, [
      heading,
      trial.state === "complete" ? exportButton(view, trial.number, "export-selected") : null,
    ]),
    el("p", { class: "rec-title", id: "selected-trial", dataset: { trialNumber: trial.number } }, [
      `trial #${trial.number} `,
      el("span", { class: `badge cat-${category(trial)}`, text: category(trial) }),
    ]),
    el("div", { class: "chips" }, configChips(trial.flat)),
    metrics.length ? metricGrid(metrics, trial.metrics) : null,
    overlayTable(trial),
    ...(trial.violations || []).map((v) => el("p", { class: "callout warn", text: v })),
    trial.error ? el("p", { class: "callout error", text: trial.error }) : null,
    breakdownTable("Step time breakdown", trial.details?.breakdown_s, (v) => `${fmtSig(v)} s`),
    breakdownTable("Memory per GPU", trial.details?.memory_breakdown_gib, (v) => `${fmtNum(v, 2)} GiB`),
  );
}

/** Predicted (analytical) against measured (profiling) values, with the relative error. */
function overlayTable(trial) {
  const overlay = overlayOf(trial);
  if (!overlay) return null;
  const names = [...new Set([...Object.keys(overlay.predicted), ...Object.keys(overlay.measured)])]
    .filter((m) => isNum(overlay.predicted[m]) || isNum(overlay.measured[m]));
  if (!names.length) return null;
  const error = (p, m) => (isNum(p) && isNum(m) && m !== 0
    ? `${fmtNum((100 * (p - m)) / Math.abs(m), 1)} %` : "–");
  return el("table", { class: "data-table compact overlay-table" }, [
    el("thead", {}, el("tr", {}, ["metric", "predicted", "measured", "error"].map((h, i) =>
      el("th", { class: i ? "num" : null, text: h })))),
    el("tbody", {}, names.map((m) => el("tr", {}, [
      el("td", { text: metricLabel(m) }),
      el("td", { class: "num", text: fmtMetric(m, overlay.predicted[m]) }),
      el("td", { class: "num", text: fmtMetric(m, overlay.measured[m]) }),
      el("td", { class: "num", text: error(overlay.predicted[m], overlay.measured[m]) }),
    ]))),
  ]);
}

function breakdownTable(title, terms, fmt) {
  if (!terms || typeof terms !== "object") return null;
  const rows = Object.entries(terms).filter(([, v]) => isNum(v)).sort((a, b) => b[1] - a[1]);
  if (!rows.length) return null;
  return el("details", { class: "breakdown" }, [
    el("summary", { text: title }),
    el("table", { class: "data-table compact" }, el("tbody", {}, rows.map(([term, v]) =>
      el("tr", {}, [
        el("td", { text: term.replaceAll("_", " ") }),
        el("td", { class: "num", text: fmt(v) }),
      ])))),
  ]);
}

/* ------------------------------------------------------------------ start */

function start() {
  $("submit-form").addEventListener("submit", onSubmit);
  $("submit-form").addEventListener("input", (ev) => ev.target.classList.remove("invalid"));
  $("f-kind").addEventListener("change", onKindChange);
  $("example-spec").addEventListener("click", pasteExample);
  $("welcome-example").addEventListener("click", pasteExample);
  $("pareto-x").addEventListener("change", onAxisChange);
  $("pareto-y").addEventListener("change", onAxisChange);
  $("copy-export").addEventListener("click", (ev) =>
    copyText($("export-text").textContent, ev.currentTarget, $("export-text")));
  $("close-export").addEventListener("click", () => $("export-panel").classList.add("hidden"));
  document.addEventListener("click", (ev) => {
    if (state.menu && !$("export-menu").contains(ev.target)) closeExportMenu();
  });
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeExportMenu(); });
  window.addEventListener("hashchange", route);
  onKindChange();
  loadPlotly();
  loadCatalogs();
  refreshJobs();
  route();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
