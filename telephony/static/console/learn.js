"use strict";
// Learning from calls on a call's page (telephony/console/learn.py): review a caller turn into the reviewed
// training file of the domain that answered the call, and retrain that domain. Uses console.js's helpers.

function reviewForm(callId, turn, domain) {
  const intent = el("input", { name: "intent", value: turn.intent || "", required: true, size: 18 });
  intent.setAttribute("list", "known-intents");
  const example = el("input", { name: "example", value: turn.transcript, required: true, size: 44 });
  const status = el("span", { class: "review-status meta" });
  const confirm = el("button", { type: "button", class: "confirm", textContent: "Confirm" });
  const faq = el("input", { name: "faq", size: 18, placeholder: "answer id" }), answer = el("input", { name: "answer", size: 30, placeholder: "a new answer's words" });
  faq.setAttribute("list", "known-answers");
  const asFaq = el("button", { type: "button", class: "faq", textContent: "Add as FAQ question" });
  const form = el("form", { class: "review", "data-index": turn.index },
    el("label", {}, "intent ", intent), el("label", {}, "words, slots as [words](slot) ", example),
    confirm, el("button", { type: "submit", class: "correct", textContent: "Save correction" }),
    el("label", {}, "or FAQ answer ", faq), answer, asFaq, status);
  const send = async verdict => {
    const body = verdict === "faq" ? { verdict, faq: faq.value, answer: answer.value, example: example.value }
      : { verdict, intent: verdict === "confirmed" ? (turn.intent || intent.value) : intent.value, example: example.value };
    try {
      const saved = await api(`/console/api/calls/${encodeURIComponent(callId)}/turns/${turn.index}/review`, {
        method: "POST", headers: { "X-CSRF-Token": state.me.csrf, "Content-Type": "application/json" }, body: JSON.stringify(body) });
      status.textContent = `${saved.verdict} as ${saved.intent || saved.faq} by ${saved.by}`; form.dataset.saved = saved.verdict;
      showLearning(domain);  // the count of reviews (and the retrain's state) as they are now
    } catch (e) { status.textContent = "not saved: " + e.message; }
  };
  form.addEventListener("click", e => e.stopPropagation());  // a click in the form is no "play from here"
  asFaq.onclick = () => send("faq");
  confirm.onclick = () => send("confirmed");
  form.onsubmit = e => { e.preventDefault(); send("corrected"); };
  return form;
}

// The reviews and retrain of one domain (null: the gateway's default, or a gateway without domains).
async function showLearning(domain) {
  const query = domain ? `?domain=${encodeURIComponent(domain)}` : "";
  const r = await api("/console/api/reviews" + query), box = $("learn");
  $("known-intents").replaceChildren(...r.known_intents.map(i => el("option", { value: i })));
  $("known-answers").replaceChildren(...r.known_answers.map(i => el("option", { value: i })));
  const retrain = el("button", { type: "button", id: "retrain", textContent: r.domain ? `Retrain ${r.domain}` : "Retrain" });
  retrain.hidden = state.me.role !== "supervisor" || !r.retrain.configured;
  const status = el("span", { class: "meta", id: "retrain-status" }), scores = el("p", { class: "meta", id: "retrain-scores" });
  const show = run => {
    status.textContent = run.running ? "retraining…" : run.returncode === null ? "" : `last run exited ${run.returncode}`;
    scores.replaceChildren(...retrainScores(run));
    if (run.running) setTimeout(async () => { if ($("retrain-status") === status) show(await api("/console/api/retrain" + query)); }, 2000);
  };
  retrain.onclick = async () => {
    try { show(await post("/console/api/retrain" + query)); } catch (e) { status.textContent = e.message; }
  };
  const where = r.domain ? `domain ${r.domain}: ` : "";
  box.dataset.domain = r.domain || "";
  box.replaceChildren(el("span", { class: "meta" }, `${where}${r.reviews.length} review(s) in ${r.file}`), retrain, status, scores);
  show(r.retrain);
}

// The last retrain's held-out scores, before and after, and whether the new model serves (data-swapped).
function retrainScores(run) {
  const name = m => m.model.split("/").pop(), d = run.decision, out = [];
  if (run.serving) out.push(el("span", {}, `serving ${name(run.serving)}, held-out ${fmt.pct(run.serving.score)}. `));
  if (d && d.error) out.push(el("b", { "data-swapped": "false" }, `not swapped: ${d.error}`));
  else if (d) out.push(el("b", { "data-swapped": String(d.swapped) },
    `Retrained: held-out ${fmt.pct(d.before.score)} before (${name(d.before)}), ${fmt.pct(d.after.score)} after (${name(d.after)}): ` +
    (d.swapped ? "swapped in live." : d.before.model === d.after.model ? "already serving." : "kept the serving model (the new one scores lower).")));
  if (!run.running && run.output) out.push(el("details", {}, el("summary", {}, "training output"), el("pre", {}, run.output)));
  return out;
}

