// hquery viewer: the slide list, an OpenSeadragon deep-zoom view and a tile-score heatmap over it.
"use strict";

const state = { slides: [], sample: null, scores: null, overlay: null, viewer: null, pending: null };
const $ = (id) => document.getElementById(id);

// magma-like ramp: dark purple to yellow
const RAMP = [[0, 0, 4], [81, 18, 124], [183, 55, 121], [252, 137, 97], [252, 253, 191]];
function colour(t) {
  t = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i;
  return RAMP[i].map((c, k) => Math.round(c + f * (RAMP[i + 1][k] - c)));
}

function fmt(v) { return v === null || v === undefined ? "" : Number(v).toPrecision(3); }

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) { throw new Error(body.error || response.statusText); }
  return body;
}

async function loadGeneSets() {
  const { gene_sets } = await getJSON("/api/gene-sets");
  for (const gs of gene_sets) {
    $("sort-set").add(new Option(gs.name, gs.name));
    const option = document.createElement("option");
    option.value = gs.name;
    $("gene-set-names").appendChild(option);
  }
}

async function loadSlides() {
  const params = new URLSearchParams({ q: $("search").value, cohort: $("cohort").value,
                                       cancer_type: $("cancer-type").value, gene_set: $("sort-set").value });
  for (const [k, v] of [...params]) { if (!v) { params.delete(k); } }
  const { slides, gene_set, scored } = await getJSON("/api/slides?" + params);
  state.slides = slides;
  const trust = slides.find((s) => s.trust !== null);
  $("trust").textContent = !gene_set ? "" : !scored ? `${gene_set}: no slide-level run yet (hquery prompt)`
    : `${gene_set}: ${scored} slides scored; held-out R² of its route ${trust ? fmt(trust.trust) : "not evaluated"}`;
  for (const [select, key] of [["cohort", "cohort"], ["cancer-type", "cancer_type"]]) {
    const known = new Set([...$(select).options].map((o) => o.value));
    for (const s of slides) { if (s[key] && !known.has(s[key])) { $(select).add(new Option(s[key], s[key])); known.add(s[key]); } }
  }
  const body = $("slides");
  body.replaceChildren();
  for (const s of slides) {
    const tr = document.createElement("tr");
    tr.className = "slide" + (s.sample_id === state.sample ? " selected" : "");
    tr.dataset.sample = s.sample_id;
    // store values are text, never markup: each cell is filled with textContent
    for (const text of [s.sample_id, s.cancer_type || "", fmt(s.score), fmt(s.dispersion)]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    tr.title = s.trust === null ? "" : `held-out R² of this set's route: ${fmt(s.trust)}`;
    tr.addEventListener("click", () => openSlide(s.sample_id));
    body.appendChild(tr);
  }
}

function openSlide(sample) {
  state.sample = sample;
  state.scores = null;
  document.querySelectorAll("#slides tr").forEach((tr) => tr.classList.toggle("selected", tr.dataset.sample === sample));
  if (!state.viewer) {
    state.viewer = OpenSeadragon({ id: "viewer", prefixUrl: "", showNavigationControl: false, maxZoomPixelRatio: 4 });
    state.viewer.addHandler("open", drawOverlay);
    new OpenSeadragon.MouseTracker({ element: state.viewer.element, moveHandler: hover,
                                     leaveHandler: () => { $("hover").style.display = "none"; } });
  }
  state.viewer.open(`/api/slides/${encodeURIComponent(sample)}.dzi`);
  $("status").textContent = sample;
  if ($("genes").value) { show(); }
}

async function show() {
  const genes = $("genes").value.trim();
  if (!state.sample || !genes) { $("status").textContent = "pick a slide and a gene set"; return; }
  const url = `/api/slides/${encodeURIComponent(state.sample)}/tiles?gene_set=${encodeURIComponent(genes)}`;
  try {
    state.scores = await getJSON(url);
  } catch (missing) {
    state.scores = null;
    await runPrompt(genes);
    return;
  }
  drawOverlay();
}

async function runPrompt(genes) {
  // one job per slide and gene list: a second click while it runs waits for the same job
  const sample = state.sample, key = `${sample}\n${genes}`;
  if (state.pending === key) { return; }
  state.pending = key;
  try {
    const { job } = await getJSON("/api/prompts", { method: "POST", headers: { "Content-Type": "application/json" },
                                                     body: JSON.stringify({ sample_id: sample, genes }) });
    for (;;) {
      const status = await getJSON(`/api/prompts/${job}`);
      if (state.sample !== sample) { return; }  // the user moved on; the scores stay recorded
      if (status.state === "running") {
        $("status").textContent = `scoring ${genes} on ${sample}'s tiles... ${status.elapsed.toFixed(0)} s`;
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      if (status.state === "failed") { $("status").textContent = `failed: ${status.error}`; return; }
      $("genes").value = status.gene_set;
      state.scores = await getJSON(`/api/slides/${encodeURIComponent(sample)}/tiles?gene_set=${encodeURIComponent(status.gene_set)}`);
      drawOverlay();
      return;
    }
  } catch (error) {
    $("status").textContent = `failed: ${error.message}`;
  } finally {
    if (state.pending === key) { state.pending = null; }
  }
}

function drawOverlay() {
  const scores = state.scores;
  if (!state.viewer || !state.viewer.world.getItemAt(0)) { return; }
  if (state.overlay) { state.viewer.removeOverlay(state.overlay); state.overlay = null; }
  if (!scores || scores.sample_id !== state.sample) { return; }
  const key = $("uncertainty").checked ? "dispersion" : "score";
  const values = scores.tiles.map((t) => t[key]).filter((v) => v !== null);
  const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
  const scale = Math.min(1, 2048 / Math.max(scores.width, scores.height));
  const canvas = document.createElement("canvas");
  canvas.id = "heatmap";
  canvas.width = Math.max(1, Math.round(scores.width * scale));
  canvas.height = Math.max(1, Math.round(scores.height * scale));
  const ctx = canvas.getContext("2d");
  for (const t of scores.tiles) {
    if (t[key] === null) { continue; }
    const [r, g, b] = colour((t[key] - lo) / span);
    ctx.fillStyle = `rgba(${r},${g},${b},0.55)`;
    ctx.fillRect(t.x * scale, t.y * scale, Math.ceil(scores.tile_side * scale), Math.ceil(scores.tile_side * scale));
  }
  const item = state.viewer.world.getItemAt(0);
  state.overlay = canvas;
  state.viewer.addOverlay({ element: canvas, location: item.imageToViewportRectangle(0, 0, scores.width, scores.height) });
  const bar = $("colorbar").getContext("2d");
  for (let x = 0; x < 160; x++) { const [r, g, b] = colour(x / 159); bar.fillStyle = `rgb(${r},${g},${b})`; bar.fillRect(x, 0, 1, 12); }
  $("low").textContent = fmt(lo);
  $("high").textContent = fmt(hi);
  $("status").textContent = `${scores.gene_set} ${key} on ${scores.tiles.length} tiles of ${scores.sample_id} (run ${scores.run_id})`;
}

function hover(event) {
  const box = $("hover");
  const scores = state.scores, item = state.viewer && state.viewer.world.getItemAt(0);
  if (!scores || !item) { box.style.display = "none"; return; }
  const point = item.viewerElementToImageCoordinates(event.position);
  const tile = scores.tiles.find((t) => point.x >= t.x && point.x < t.x + scores.tile_side &&
                                        point.y >= t.y && point.y < t.y + scores.tile_side);
  if (!tile) { box.style.display = "none"; return; }
  box.textContent = `tile ${tile.tile_index}: score ${fmt(tile.score)}, dispersion ${fmt(tile.dispersion)}`;
  box.style.left = `${event.position.x + 12}px`;
  box.style.top = `${event.position.y + 12}px`;
  box.style.display = "block";
}

$("search").addEventListener("input", loadSlides);
for (const id of ["cohort", "cancer-type", "sort-set"]) { $(id).addEventListener("change", loadSlides); }
$("show").addEventListener("click", show);
$("genes").addEventListener("keydown", (e) => { if (e.key === "Enter") { show(); } });
$("uncertainty").addEventListener("change", drawOverlay);
loadGeneSets().then(loadSlides).catch((error) => { $("status").textContent = error.message; });
