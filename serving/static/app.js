// signflow web page: upload or record a clip, POST it to /predict_video, show the top-3 glosses.
"use strict";

const $ = (id) => document.getElementById(id);
let config = { top_k: 3, max_upload_mb: 50, api_key_required: false };
let stream = null;

async function loadConfig() {
  try {
    const response = await fetch("/ui/config.json");
    if (response.ok) config = await response.json();
  } catch (error) {
    console.warn("no /ui/config.json", error);
  }
  $("model-tag").textContent = config.model_tag ? `Model ${config.model_tag}.` : "";
  $("limits").textContent = `Up to ${config.max_upload_mb} MB and ${config.max_duration_s} s; mp4, webm, avi or mov.`;
  $("auth-card").hidden = !config.api_key_required;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function render(result, roundTripMs) {
  const list = $("predictions");
  list.replaceChildren();
  for (const item of result.top_k.slice(0, 3)) {
    const li = document.createElement("li");
    li.className = "prediction";
    const percent = (item.probability * 100).toFixed(1);
    li.innerHTML = `<span class="gloss"></span> <span class="prob">${percent}%</span><div class="bar"><span style="width:${percent}%"></span></div>`;
    li.querySelector(".gloss").textContent = item.gloss;
    list.appendChild(li);
  }
  const t = result.timings_ms || {};
  $("latency").textContent =
    `Latency ${roundTripMs.toFixed(0)} ms round trip; server ${Number(t.total).toFixed(0)} ms ` +
    `(decode ${Number(t.decode).toFixed(0)}, preprocess ${Number(t.preprocess).toFixed(0)}, model ${Number(t.model).toFixed(0)}).`;
  const threshold = result.abstain_threshold == null ? "" :
    ` (answers below ${(result.abstain_threshold * 100).toFixed(0)}% confidence are withheld)`;
  if (result.recognised === false) {
    setStatus(`Not recognised${threshold}: best guesses below.`);
  } else {
    setStatus(`Recognised: ${result.gloss}${threshold}.` + (result.low_confidence ? " Low confidence: try a clearer clip." : ""));
  }
}

async function recognise(blob, filename) {
  if (blob.size > config.max_upload_mb * 1024 * 1024) {
    setStatus(`The clip is ${(blob.size / 1048576).toFixed(1)} MB; the limit is ${config.max_upload_mb} MB.`, true);
    return;
  }
  const form = new FormData();
  form.append("video", blob, filename);
  form.append("top_k", String(Math.max(3, config.top_k)));
  const headers = {};
  if (config.api_key_required) headers["x-api-key"] = $("api-key").value;
  setStatus("Recognising…");
  $("predictions").replaceChildren();
  $("latency").textContent = "";
  const started = performance.now();
  try {
    const response = await fetch("/predict_video", { method: "POST", body: form, headers });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = Array.isArray(body.detail) ? body.detail.map((d) => d.msg).join("; ") : body.detail;
      setStatus(`Refused (${response.status} ${body.error || ""}): ${detail || "see the server log"}`, true);
      return;
    }
    render(body, performance.now() - started);
  } catch (error) {
    setStatus(`Request failed: ${error}`, true);
  }
}

$("upload-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const file = $("video-input").files[0];
  if (file) recognise(file, file.name);
});

$("camera-button").addEventListener("click", async () => {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    $("preview").srcObject = stream;
    await $("preview").play();
    $("record-button").disabled = false;
  } catch (error) {
    setStatus(`No camera: ${error.message || error}`, true);
  }
});

$("record-button").addEventListener("click", () => {
  if (!stream) return;
  const seconds = Math.min(10, Math.max(1, Number($("record-seconds").value) || 3));
  const type = ["video/webm;codecs=vp8", "video/webm", "video/mp4"].find((t) => MediaRecorder.isTypeSupported(t));
  const recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
  const chunks = [];
  recorder.ondataavailable = (event) => event.data.size && chunks.push(event.data);
  recorder.onstop = () => {
    const mime = (recorder.mimeType || "video/webm").split(";")[0];
    const blob = new Blob(chunks, { type: mime });
    recognise(blob, mime === "video/mp4" ? "webcam.mp4" : "webcam.webm");
    $("record-button").disabled = false;
  };
  $("record-button").disabled = true;
  setStatus(`Recording ${seconds} s…`);
  recorder.start();
  setTimeout(() => recorder.stop(), seconds * 1000);
});

loadConfig();
