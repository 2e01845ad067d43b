"use strict";
// The login page: send the token once; the server answers with a session cookie.
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const shown = document.getElementById("login-error");
  const response = await fetch("/api/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify({ token: document.getElementById("token").value }),
  });
  if (response.ok) {
    window.location.assign("/");
    return;
  }
  const body = await response.json().catch(() => ({ error: "Login failed." }));
  shown.textContent = body.error || "Login failed.";
  shown.hidden = false;
});
