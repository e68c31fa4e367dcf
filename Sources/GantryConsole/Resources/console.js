// The console's one script (no third-party code; the page's policy allows only this origin's
// files). Each feature starts where its page has the element it works on.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

  // The message of an API refusal: problem details on /api, the OpenAI envelope on /v1.
  const problem = (text) => {
    try {
      const json = JSON.parse(text);
      return json.detail ?? json.error?.message ?? text;
    } catch {
      return text;
    }
  };

  // The login of a server without an identity provider: the key goes as a bearer credential,
  // the answer sets the session cookie, then back to the page asked for (a path of this site).
  const keyLogin = document.querySelector("form[data-key-login]");
  if (keyLogin) {
    keyLogin.addEventListener("submit", async (event) => {
      event.preventDefault();
      const failure = keyLogin.querySelector(".form-error");
      const response = await fetch("/auth/key-session", {
        method: "POST",
        credentials: "same-origin",
        headers: { authorization: `Bearer ${new FormData(keyLogin).get("key")}` },
      });
      if (response.ok) {
        // Only back into the console: the page came from a console path, but a browser reads
        // `/\host` as `//host`, so nothing else is trusted.
        const next = keyLogin.dataset.next ?? "";
        window.location.assign(/^\/console(\/[\w\-.~%/]*)?(\?[^\\]*)?$/.test(next) ? next : "/console");
      } else {
        failure.textContent = problem(await response.text());
        failure.hidden = false;
      }
    });
  }

  // Buttons that delete or revoke ask first.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // Model files: uploaded one by one with a progress bar. A file the version already holds at the
  // same size is skipped, so choosing the files again after a failure resumes where it stopped;
  // a file whose upload fails is tried again three times.
  const put = (url, file, onProgress) =>
    new Promise((resolve, reject) => {
      const request = new XMLHttpRequest();
      request.open("PUT", url);
      request.setRequestHeader("x-csrf-token", csrf);
      request.upload.addEventListener("progress", (event) => onProgress(event.loaded));
      request.addEventListener("load", () =>
        request.status < 300 ? resolve() : reject(new Error(problem(request.responseText) || `HTTP ${request.status}`)),
      );
      request.addEventListener("error", () => reject(new Error("the connection failed")));
      request.send(file);
    });
  for (const form of document.querySelectorAll("form[data-upload]")) {
    const known = new Map(
      (form.dataset.known ?? "").split("\n").filter(Boolean).map((line) => line.split("\t")),
    );
    const progress = form.querySelector("progress");
    const output = form.querySelector("output");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const files = [...form.querySelector('input[type="file"]').files];
      if (files.length === 0) return;
      const total = files.reduce((sum, file) => sum + file.size, 0);
      let done = 0;
      progress.hidden = false;
      progress.max = Math.max(total, 1);
      for (const file of files) {
        if (known.get(file.name) === String(file.size)) {
          done += file.size;
          output.textContent = `${file.name}: already uploaded, skipped`;
          continue;
        }
        let attempt = 0;
        for (;;) {
          try {
            await put(form.dataset.upload + encodeURIComponent(file.name), file, (sent) => {
              progress.value = done + sent;
              output.textContent = `${file.name}: ${Math.round(((done + sent) / progress.max) * 100)} %`;
            });
            break;
          } catch (error) {
            attempt += 1;
            if (attempt >= 3) {
              output.textContent = `${file.name}: ${error.message}. Choose the files again to resume: stored files are skipped.`;
              return;
            }
            await new Promise((resume) => setTimeout(resume, 1000 * attempt));
          }
        }
        done += file.size;
        known.set(file.name, String(file.size));
      }
      progress.value = progress.max;
      output.textContent = "uploaded";
      window.location.reload();
    });
  }

  // An instance's engine log, read again every two seconds while the page is open.
  const log = document.getElementById("engine-log");
  if (log) {
    const refresh = async () => {
      try {
        const response = await fetch(log.dataset.log, { credentials: "same-origin" });
        const text = await response.text();
        const following = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.textContent = response.ok ? text || "(empty)" : `(${response.status}) ${problem(text)}`;
        if (following) log.scrollTop = log.scrollHeight;
      } catch {
        // The next round tries again.
      }
      window.setTimeout(refresh, 2000);
    };
    refresh();
  }

  // The playground: one chat completion, streamed or not, with its tokens and timings.
  const playground = document.querySelector("form[data-playground]");
  if (playground) {
    const answer = document.getElementById("answer");
    const failure = document.getElementById("answer-error");
    const stat = (name, text) => {
      document.getElementById(`stat-${name}`).textContent = text;
    };
    const milliseconds = (value) => (value == null ? "–" : `${Math.round(value)} ms`);
    playground.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = new FormData(playground);
      const messages = [];
      if (data.get("system")) messages.push({ role: "system", content: data.get("system") });
      messages.push({ role: "user", content: data.get("message") });
      const stream = data.get("stream") === "true";
      const body = { model: data.get("model"), messages, max_tokens: Number(data.get("max_tokens")), stream };
      if (stream) body.stream_options = { include_usage: true };
      answer.textContent = "";
      failure.hidden = true;
      for (const name of ["prompt", "completion", "ttft", "latency"]) stat(name, "…");
      const started = performance.now();
      let firstToken = null;
      let usage = null;
      try {
        const response = await fetch("/v1/chat/completions", {
          method: "POST",
          credentials: "same-origin",
          headers: { "content-type": "application/json", "x-csrf-token": csrf },
          body: JSON.stringify(body),
        });
        if (!response.ok) throw new Error(problem(await response.text()));
        if (!stream) {
          const json = await response.json();
          firstToken = performance.now();
          answer.textContent = json.choices?.[0]?.message?.content ?? "";
          usage = json.usage;
        } else {
          const reader = response.body.getReader();
          const decoder = new TextDecoder();
          let pending = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            pending += decoder.decode(value, { stream: true });
            let end;
            while ((end = pending.indexOf("\n\n")) >= 0) {
              const event = pending.slice(0, end);
              pending = pending.slice(end + 2);
              for (const line of event.split("\n")) {
                if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
                const chunk = JSON.parse(line.slice(6));
                if (chunk.error) throw new Error(chunk.error.message);
                const text = chunk.choices?.[0]?.delta?.content;
                if (text) {
                  firstToken ??= performance.now();
                  answer.textContent += text;
                }
                if (chunk.usage) usage = chunk.usage;
              }
            }
          }
        }
        stat("prompt", usage?.prompt_tokens ?? "–");
        stat("completion", usage?.completion_tokens ?? "–");
        stat("ttft", milliseconds(firstToken == null ? null : firstToken - started));
        stat("latency", milliseconds(performance.now() - started));
        answer.dataset.done = "true";
      } catch (error) {
        failure.textContent = error.message;
        failure.hidden = false;
        for (const name of ["prompt", "completion", "ttft", "latency"]) stat(name, "–");
        answer.dataset.done = "error";
      }
    });
  }
})();
