/* Enter analyses the text (Shift+Enter still starts a new line in the text box; Ctrl/Cmd+Enter works too). */
document.addEventListener("keydown", function (event) {
  var target = event.target;
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || !target) {
    return;
  }
  if (target.id === "text-input" || target.id === "text-pair-input") {
    var button = document.getElementById("analyse-button");
    if (button) {
      event.preventDefault();
      setTimeout(function () { button.click(); }, 50);  // after Dash has taken the box's last value
    }
  }
});
