// The query console's helpers. Choosing a table puts its name into the editor at the cursor and,
// for a shared table, selects its agreement's purpose (without JavaScript the same links load the
// console with a starter query). After htmx swaps in an answer, focus moves to what changed: the
// error next to the editor, or the result or explanation.

function insertTable(link) {
  const editor = document.getElementById("f-sql");
  if (!editor) return false;
  const ref = link.dataset.ref;
  const start = editor.selectionStart ?? editor.value.length;
  const end = editor.selectionEnd ?? start;
  editor.value = editor.value.slice(0, start) + ref + editor.value.slice(end);
  editor.focus();
  editor.setSelectionRange(start + ref.length, start + ref.length);
  const purpose = document.getElementById("f-purpose");
  if (purpose && link.dataset.purpose) purpose.value = link.dataset.purpose;
  return true;
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a.insert-table");
  if (link && insertTable(link)) event.preventDefault();
});

document.body.addEventListener("htmx:afterSettle", () => {
  const target =
    document.getElementById("f-sql-error") ||
    document.getElementById("result-title") ||
    document.getElementById("explain-title");
  if (target) target.focus();
});
