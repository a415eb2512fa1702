// Upload forms of the "My agency" pages: refuse a file over the hub's limit before sending it,
// show the upload's progress, and let htmx swap in the server's answer to invalid input (422)
// or an over-the-limit body (413), which carry the error messages next to the fields.
function fileTooLarge(form) {
  const input = form.querySelector("input[type=file][data-max-bytes]");
  if (!input || !input.files || input.files.length === 0) return null;
  const limit = Number(input.dataset.maxBytes);
  return input.files[0].size > limit ? input : null;
}

function showFileProblem(input) {
  const holder = document.getElementById("file-problem");
  const message = document.createElement("p");
  message.className = "field-error";
  message.id = "f-file-error";
  message.setAttribute("role", "alert");
  message.textContent =
    "This file is larger than the hub accepts (" + input.dataset.maxSize + "); split it or ask the hub administrator.";
  holder.replaceChildren(message);
  input.setAttribute("aria-invalid", "true");
  input.focus();
}

document.body.addEventListener("htmx:confirm", (event) => {
  const form = event.target.closest("form");
  const input = form ? fileTooLarge(form) : null;
  if (input) {
    event.preventDefault();
    showFileProblem(input);
  }
});

document.body.addEventListener("htmx:xhr:progress", (event) => {
  const bar = event.target.querySelector("progress");
  if (bar && event.detail.lengthComputable) {
    bar.value = Math.round((event.detail.loaded / event.detail.total) * 100);
  }
});

document.body.addEventListener("htmx:beforeSwap", (event) => {
  const status = event.detail.xhr.status;
  if (status === 413 || status === 422) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
