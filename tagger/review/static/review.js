// tagger review: keyboard shortcuts, the segment being heard, seeking, and the upload.
// Plain JS, no library, nothing fetched from elsewhere.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const QUEUE_KEY = "tagger-review-queue";

  function typing(event) {
    const t = event.target;
    return t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA");
  }

  // ---- the queue page: remember the order, move a selection with j/k, Enter opens
  const queue = document.getElementById("queue");
  if (queue) {
    const rows = Array.from(queue.querySelectorAll("tbody tr"));
    const ids = rows.map((r) => Number(r.dataset.track));
    const nextPage = document.getElementById("next-page");
    sessionStorage.setItem(QUEUE_KEY, JSON.stringify({ids: ids, list: location.href,
      next: nextPage ? nextPage.href : null}));
    let selected = 0;
    const select = (i) => {
      if (!rows.length) return;
      selected = Math.max(0, Math.min(rows.length - 1, i));
      rows.forEach((r, j) => r.classList.toggle("selected", j === selected));
      rows[selected].scrollIntoView({block: "nearest"});
    };
    select(0);
    rows.forEach((r, j) => r.addEventListener("click", (e) => {
      if (e.target.tagName !== "A") location.href = r.dataset.href;
      select(j);
    }));
    document.addEventListener("keydown", (e) => {
      if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "j") select(selected + 1);
      else if (e.key === "k") select(selected - 1);
      else if (e.key === "Enter" && rows.length) location.href = rows[selected].dataset.href;
    });
  }

  // ---- the track page
  const title = document.getElementById("track-title");
  if (title) {
    const here = Number(title.dataset.track);
    const stored = JSON.parse(sessionStorage.getItem(QUEUE_KEY) || "null");
    const go = (step) => {
      if (!stored) return;
      const i = stored.ids.indexOf(here);
      const j = i + step;
      if (i >= 0 && j >= 0 && j < stored.ids.length) location.href = "/track/" + stored.ids[j];
      else if (j >= stored.ids.length && stored.next) location.href = stored.next;
      else if (j < 0) location.href = stored.list;
    };
    const player = document.getElementById("player");
    const segments = Array.from(document.querySelectorAll("#segments .segment"));
    const cells = Array.from(document.querySelectorAll("svg.taggram g.segment"));
    const highlight = () => {
      if (!player) return;
      const t = player.currentTime;
      let current = -1;
      segments.forEach((s, i) => {
        if (t >= Number(s.dataset.from) && t < Number(s.dataset.to)) current = i;
      });
      segments.forEach((s, i) => s.classList.toggle("playing", i === current));
      cells.forEach((c, i) => c.classList.toggle("playing", i === current));
      document.body.dataset.playingSegment = String(current);
    };
    if (player) {
      player.addEventListener("timeupdate", highlight);
      player.addEventListener("seeked", highlight);
      segments.forEach((s) => s.querySelector(".seek")?.addEventListener("click", () => {
        player.currentTime = Number(s.dataset.from);
        player.play();
      }));
      cells.forEach((c) => c.addEventListener("click", () => {
        const s = segments[Number(c.dataset.index)];
        if (s) { player.currentTime = Number(s.dataset.from); player.play(); }
      }));
    }
    document.addEventListener("keydown", (e) => {
      if (typing(e) || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "j") go(1);
      else if (e.key === "k") go(-1);
      else if (e.key === "a") document.getElementById("accept")?.click();
      else if (/^[1-9]$/.test(e.key)) {
        document.querySelector('#candidates button[data-key="' + e.key + '"]')?.click();
      } else if (e.key === " " && player) {
        e.preventDefault();
        if (player.paused) player.play(); else player.pause();
      }
    });
  }

  // ---- classify a file: drop or pick, sent as the request body (no multipart)
  const zone = document.getElementById("dropzone");
  if (zone) {
    const input = document.getElementById("upload");
    const out = document.getElementById("classify-result");
    const send = async (file) => {
      out.innerHTML = "<p class=\"busy\">classifying " + file.name.replace(/[<>&]/g, "") +
        " …</p>";
      const response = await fetch("/classify", {method: "POST", body: file,
        headers: {"X-CSRF-Token": csrf, "X-Filename": encodeURIComponent(file.name),
          "Content-Type": "application/octet-stream"}});
      // too large (413) or too many uploads at once (503): the server says so in a line
      const said = (response.headers.get("Content-Type") || "").startsWith("text/plain")
        ? " " + (await response.text()).replace(/[<>&]/g, "") : "";
      out.innerHTML = response.ok ? await response.text()
        : "<p class=\"flash failed\">refused: " + response.status + said + "</p>";
    };
    input.addEventListener("change", () => { if (input.files[0]) send(input.files[0]); });
    zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      if (e.dataTransfer.files[0]) send(e.dataTransfer.files[0]);
    });
  }
})();
