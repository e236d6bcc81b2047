// The page of `transferkit serve`: no build step, no dependencies, nothing loaded from elsewhere.
// It asks /metadata what the model takes, sends images (multipart field `files`) or texts (JSON)
// to /predict, draws the top classes of each input, and renders /card (markdown) as HTML. "Show
// why" asks /explain about one input and draws the heat map over the image or colours its words.
"use strict";

const TOP_CLASSES = 5;
const $ = (selector) => document.querySelector(selector);
const state = { task: null, files: [] };

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

function percent(p) {
  return (100 * p).toFixed(p >= 0.995 || p < 0.0005 ? 0 : 1) + "%";
}

// -- a small markdown renderer: headings, lists, tables, code, emphasis --------------------------

function inline(text) {
  return escapeHtml(text)
    .replace(/`([^`]+)`/g, "<code>$1</code>")
    .replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[\s(])\*([^*\s][^*]*)\*/g, "$1<em>$2</em>")
    .replace(/\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g, '<a href="$2" rel="noopener">$1</a>');
}

function tableHtml(rows) {
  const cells = (row) => row.trim().replace(/^\|/, "").replace(/\|$/, "").split("|")
    .map((c) => c.trim());
  const header = cells(rows[0]);
  const hasRule = rows.length > 1 && /^\s*\|?\s*:?-{2,}/.test(rows[1]);
  const rules = hasRule ? cells(rows[1]) : [];
  const numeric = rules.map((r) => r.endsWith(":"));
  const body = rows.slice(hasRule ? 2 : 1).map(cells);
  const cell = (tag, text, i) =>
    `<${tag}${numeric[i] ? ' class="num"' : ""}>${inline(text)}</${tag}>`;
  return "<table><thead><tr>" + header.map((c, i) => cell("th", c, i)).join("") +
    "</tr></thead><tbody>" +
    body.map((r) => "<tr>" + r.map((c, i) => cell("td", c, i)).join("") + "</tr>").join("") +
    "</tbody></table>";
}

function renderMarkdown(markdown) {
  const lines = markdown.replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (/^```/.test(line)) {
      const code = [];
      for (i += 1; i < lines.length && !/^```/.test(lines[i]); i += 1) code.push(lines[i]);
      out.push("<pre><code>" + escapeHtml(code.join("\n")) + "</code></pre>");
      i += 1;
    } else if (/^#{1,6}\s/.test(line)) {
      const level = Math.min(line.match(/^#+/)[0].length + 1, 6);  // the page owns h1
      out.push(`<h${level}>${inline(line.replace(/^#+\s*/, ""))}</h${level}>`);
      i += 1;
    } else if (/^\s*\|/.test(line)) {
      const rows = [];
      for (; i < lines.length && /^\s*\|/.test(lines[i]); i += 1) rows.push(lines[i]);
      out.push(tableHtml(rows));
    } else if (/^\s*([-*]|\d+\.)\s/.test(line)) {
      const ordered = /^\s*\d+\./.test(line);
      const items = [];
      for (; i < lines.length && /^\s*([-*]|\d+\.)\s/.test(lines[i]); i += 1) {
        items.push("<li>" + inline(lines[i].replace(/^\s*([-*]|\d+\.)\s+/, "")) + "</li>");
      }
      const tag = ordered ? "ol" : "ul";
      out.push(`<${tag}>${items.join("")}</${tag}>`);
    } else if (line.trim() === "") {
      i += 1;
    } else {
      const paragraph = [];
      for (; i < lines.length && lines[i].trim() !== "" &&
             !/^(#{1,6}\s|```|\s*\||\s*([-*]|\d+\.)\s)/.test(lines[i]); i += 1) {
        paragraph.push(lines[i]);
      }
      out.push("<p>" + inline(paragraph.join(" ")) + "</p>");
    }
  }
  return out.join("\n");
}

// -- talking to the server ----------------------------------------------------------------------

async function fetchJson(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function describe(meta) {
  const parts = [`${meta.task} classifier`, `${meta.classes.length} classes: ${meta.classes.join(", ")}`];
  if (meta.backbone) parts.push(`backbone ${meta.backbone}`);
  if (meta.encoder) parts.push(`encoder ${meta.encoder}`);
  const accuracy = meta.metrics && meta.metrics.accuracy;
  if (typeof accuracy === "number") parts.push(`validation accuracy ${percent(accuracy)}`);
  parts.push(`runtime ${meta.runtime}`);
  return parts.join(" · ");
}

async function loadModel() {
  try {
    const meta = await fetchJson("/metadata");
    state.task = meta.task;
    $("#title").textContent = `${meta.task === "image" ? "Image" : "Text"} classifier: ` +
      meta.classes.slice(0, 6).join(", ") + (meta.classes.length > 6 ? ", …" : "");
    $("#facts").textContent = describe(meta);
    $("#image-input").hidden = meta.task !== "image";
    $("#text-input").hidden = meta.task !== "text";
    updateSubmit();
    document.body.dataset.task = meta.task;
  } catch (error) {
    $("#facts").textContent = "";
    showError(`Could not read the model's metadata: ${error.message}`);
  }
  try {
    const response = await fetch("/card");
    $("#card").innerHTML = renderMarkdown(await response.text());
  } catch (error) {
    $("#card").textContent = `Could not load the model card: ${error.message}`;
  }
  document.body.dataset.ready = "true";
}

function texts() {
  return $("#text").value.split("\n").map((t) => t.trim()).filter((t) => t !== "");
}

function updateSubmit() {
  const count = state.task === "image" ? state.files.length : state.task === "text" ? texts().length : 0;
  $("#submit").disabled = count === 0;
  if (state.task === "image") {
    $("#chosen").textContent = count ? `${count} image${count > 1 ? "s" : ""} chosen` : "";
  }
}

function chooseFiles(fileList) {
  state.files = Array.from(fileList).filter((f) => !f.type || f.type.startsWith("image/"));
  updateSubmit();
}

function resultCard(result, index, input) {
  const card = document.createElement("div");
  card.className = "result";
  card.dataset.index = String(index);
  let header = "";
  if (state.task === "image") {
    header = `<img alt="${escapeHtml(input.name)}" src="${URL.createObjectURL(input)}">`;
  } else {
    header = `<p class="input-text">${escapeHtml(input)}</p>`;
  }
  if (typeof result.value === "number") {  // a regression model: the value, in its units
    card.innerHTML = header +
      `<div><span class="label">${escapeHtml(result.value.toPrecision(4))}</span></div>`;
    return card;
  }
  const top = Object.entries(result.scores).sort((a, b) => b[1] - a[1]).slice(0, TOP_CLASSES);
  const bars = top.map(([name, p]) =>
    `<div class="bar-row"><span class="bar-name" title="${escapeHtml(name)}">${escapeHtml(name)}</span>` +
    `<span class="bar-track"><span class="bar-fill" style="width:${(100 * p).toFixed(1)}%;display:block"></span></span>` +
    `<span class="bar-value">${percent(p)}</span></div>`).join("");
  let verdict;
  if (Array.isArray(result.labels)) {  // a multi-label model: the set, a chip per label
    verdict = result.labels.length
      ? `<div class="chips">${result.labels.map((name) =>
          `<span class="chip">${escapeHtml(name)} <span class="score">` +
          `${percent(result.scores[name])}</span></span>`).join("")}</div>`
      : `<div><span class="score">no label above its threshold</span></div>`;
  } else {
    verdict = `<div><span class="label">${escapeHtml(result.label)}</span>` +
      `<span class="score">${percent(result.score)}</span></div>`;
  }
  card.innerHTML = header + verdict + `<div class="bars">${bars}</div>`;
  addWhy(card, input);
  return card;
}

// -- "show why": /explain for one input, drawn in its card ---------------------------------------

function addWhy(card, input) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "why";
  button.textContent = "Show why";
  button.setAttribute("aria-pressed", "false");
  button.addEventListener("click", () => toggleWhy(card, input, button));
  card.appendChild(button);
}

function wordsHtml(answer) {
  const peak = Math.max(1e-12, ...answer.words.map((w) => Math.abs(w.score)));
  const text = answer.input_text;
  let out = "";
  let position = 0;
  answer.words.forEach((w) => {
    out += escapeHtml(text.slice(position, w.start));
    const alpha = (0.75 * Math.abs(w.score) / peak).toFixed(3);
    const colour = w.score > 0 ? "220, 38, 38" : "37, 99, 235";
    out += `<span class="why-word" style="background: rgba(${colour}, ${alpha})" ` +
      `title="${w.score >= 0 ? "+" : ""}${w.score.toFixed(4)}">${escapeHtml(w.word)}</span>`;
    position = w.end;
  });
  return out + escapeHtml(text.slice(position));
}

async function toggleWhy(card, input, button) {
  const shown = button.getAttribute("aria-pressed") === "true";
  const picture = card.querySelector("img");
  const words = card.querySelector(".input-text");
  if (shown) {  // back to the input as it was
    if (picture) picture.src = card.dataset.original;
    if (words) words.textContent = input;
    button.setAttribute("aria-pressed", "false");
    button.textContent = "Show why";
    return;
  }
  showError("");
  button.disabled = true;
  button.textContent = "Explaining…";
  let options;
  if (state.task === "image") {
    const form = new FormData();
    form.append("files", input, input.name);
    options = { method: "POST", body: form };
  } else {
    options = { method: "POST", headers: { "Content-Type": "application/json" },
                body: JSON.stringify({ texts: [input] }) };
  }
  try {
    const [answer] = await fetchJson("/explain", options);
    if (picture) {
      card.dataset.original = picture.src;
      picture.src = answer.overlay;
      picture.title = `Where the evidence for ${answer.explained} lies (${answer.method})`;
    }
    if (words) words.innerHTML = wordsHtml({ ...answer, input_text: input });
    card.dataset.why = answer.explained;
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Hide why";
  } catch (error) {
    showError(`Could not explain: ${error.message}`);
    button.textContent = "Show why";
  } finally {
    button.disabled = false;
  }
}

async function classify(event) {
  event.preventDefault();
  showError("");
  const inputs = state.task === "image" ? state.files.slice() : texts();
  if (!inputs.length) return;
  let options;
  if (state.task === "image") {
    const form = new FormData();
    inputs.forEach((file) => form.append("files", file, file.name));
    options = { method: "POST", body: form };
  } else {
    options = {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ texts: inputs }),
    };
  }
  $("#submit").disabled = true;
  $("#status").textContent = "Classifying…";
  const results = $("#results");
  results.dataset.state = "busy";
  try {
    const started = performance.now();
    const answer = await fetchJson("/predict", options);
    results.replaceChildren(...answer.map((r, i) => resultCard(r, i, inputs[i])));
    $("#status").textContent = `${answer.length} in ${Math.round(performance.now() - started)} ms`;
    results.dataset.state = "done";
  } catch (error) {
    $("#status").textContent = "";
    showError(error.message);
    results.dataset.state = "error";
  } finally {
    updateSubmit();
  }
}

function setUp() {
  const drop = $("#drop");
  $("#files").addEventListener("change", (e) => chooseFiles(e.target.files));
  $("#text").addEventListener("input", updateSubmit);
  $("#form").addEventListener("submit", classify);
  ["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((name) => drop.addEventListener(name, (e) => {
    e.preventDefault();
    drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => {
    if (e.dataTransfer && e.dataTransfer.files.length) {
      chooseFiles(e.dataTransfer.files);
      classify(e);
    }
  });
  loadModel();
}

setUp();
