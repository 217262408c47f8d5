// The live page: polls /api/live every second and rewrites the table of running runs, with
// each run's pace over the last poll (records read per second).
(function () {
  const body = document.querySelector("#live tbody");
  const status = document.getElementById("live-status");
  const last = new Map();
  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    return td;
  }
  function row(run, now) {
    const tr = document.createElement("tr");
    tr.dataset.run = run.id;
    const link = document.createElement("a");
    link.href = "/runs/" + encodeURIComponent(run.id);
    link.textContent = run.pipeline;
    const name = document.createElement("td");
    name.appendChild(link);
    tr.appendChild(name);
    tr.appendChild(cell(run.mode));
    tr.appendChild(cell(run.started_at.slice(0, 19).replace("T", " ")));
    tr.appendChild(cell(run.read_count, "n read"));
    tr.appendChild(cell(run.created_count + run.updated_count, "n written"));
    tr.appendChild(cell(run.rejected_count, "n rejected"));
    const before = last.get(run.id);
    let rate = "—";
    if (before && now > before.at) rate = Math.round((run.read_count - before.read) / ((now - before.at) / 1000));
    last.set(run.id, { read: run.read_count, at: now });
    tr.appendChild(cell(rate, "n rate"));
    return tr;
  }
  async function poll() {
    try {
      const answer = await fetch("/api/live", { headers: { Accept: "application/json" } });
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const data = await answer.json();
      const now = Date.parse(data.at);
      const rows = data.runs.map((run) => row(run, now));
      if (rows.length === 0) {
        const tr = document.createElement("tr");
        tr.className = "empty";
        const td = cell("nothing is running", "muted");
        td.colSpan = 7;
        tr.appendChild(td);
        rows.push(tr);
      }
      body.replaceChildren(...rows);
      status.textContent = "Updated " + data.at.slice(11, 19) + " UTC";
    } catch (e) {
      status.textContent = "Cannot reach the console: " + e.message;
    }
  }
  poll();
  setInterval(poll, 1000);
})();
