// Whether a key pressed with focus on `target` is typed text (a text or number input, a select's search
// box, a text area, anything editable): then it is no shortcut. A focused radio, checkbox, slider or
// button is not a text field, so keys still work after clicking a tool. The one rule for the key
// listener (webapp/keyboard.py) and the review canvas's space + drag (webapp/frontend/review_canvas.js):
// both include this file.
const TEXT_TYPES = ["", "text", "search", "number", "email", "password", "url", "tel"];
function typing(target) {
  if (!target) { return false; }
  if (target.isContentEditable) { return true; }
  const tag = target.tagName || "";
  if (tag === "TEXTAREA" || tag === "SELECT") { return true; }
  return tag === "INPUT" && TEXT_TYPES.includes(String(target.type || "").toLowerCase());
}
